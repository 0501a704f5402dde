//! Running the real `dl` binary on the committed digits.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Run `dl` with `args`; returns its output.
pub fn dl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dl"))
        .args(args)
        .output()
        .expect("the dl binary runs")
}

/// stdout and stderr together, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Assert success and return the stdout.
pub fn ok(args: &[&str]) -> String {
    let output = dl(args);
    assert!(
        output.status.success(),
        "dl {args:?} failed:\n{}",
        text(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Assert a failure with exit status `code` whose stderr contains every one of `needles`.
pub fn fails(args: &[&str], code: i32, needles: &[&str]) -> String {
    let output = dl(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(code),
        "dl {args:?}:\n{}",
        text(&output)
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "dl {args:?}: stderr lacks `{needle}`:\n{}",
            text(&output)
        );
    }
    stderr
}

/// Train `model` for one epoch on 64 digits into `out`, with extra arguments.
pub fn train_tiny(model: &str, out: &Path, extra: &[&str]) -> String {
    let out = out.to_str().unwrap();
    let mut args = vec![
        "train",
        model,
        "--epochs",
        "1",
        "--limit",
        "64",
        "--batch-size",
        "32",
        "--out",
        out,
        "--quiet",
    ];
    args.extend_from_slice(extra);
    ok(&args)
}

/// A fresh temporary folder.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// `dir/name` as a string.
pub fn path(dir: &Path, name: &str) -> String {
    let p: PathBuf = dir.join(name);
    p.to_str().unwrap().to_string()
}
