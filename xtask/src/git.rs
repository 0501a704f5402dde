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
    fn in_the_workspace_it_is_the_head_commit() {
        let root = crate::python::workspace_root();
        let git = |args: &[&str]| Command::new("git").current_dir(&root).args(args).output();
        let head = match git(&["rev-parse", "--verify", "HEAD"]) {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
            other => {
                // A source tarball or a machine without git: only outside CI.
                assert!(
                    std::env::var_os("CI").is_none(),
                    "no git checkout at {}: {other:?}",
                    root.display()
                );
                println!("note: not a git checkout, the commit check is skipped");
                return;
            }
        };
        let commit = commit(&root);
        let hash = commit.strip_suffix("-dirty").unwrap_or(&commit);
        assert!(
            hash.len() >= 7 && head.starts_with(hash),
            "{commit} is not a prefix of HEAD {head}"
        );
        // `-dirty` exactly when tracked files differ from HEAD (`git diff --quiet` says 1).
        let changed = git(&["diff", "--quiet", "HEAD"]).unwrap().status.code() == Some(1);
        assert_eq!(commit.ends_with("-dirty"), changed, "{commit}");
    }
}
