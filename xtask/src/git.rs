//! The commit that benchmark results and GPU bundles record.

use std::path::Path;
use std::process::Command;

/// The short hash of `HEAD` in `root`, with `-dirty` when tracked files have changes, or
/// `unknown` outside a git checkout (or without git).
pub fn commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(commit) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(changes) if !changes.is_empty() => format!("{commit}-dirty"),
        _ => commit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_checkout_the_commit_is_unknown() {
        let tmp = std::env::temp_dir().join(format!("xtask-git-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        // GIT_CEILING_DIRECTORIES is not needed: the temporary folder is not inside a checkout.
        assert_eq!(commit(&tmp), "unknown");
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn in_the_workspace_it_is_a_hash() {
        let root = crate::python::workspace_root();
        if !root.join(".git").exists() {
            return; // a source tarball, not a checkout
        }
        let commit = commit(&root);
        let hash = commit.trim_end_matches("-dirty");
        assert!(hash.len() >= 7, "{commit}");
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{commit}");
    }
}
