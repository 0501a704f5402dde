//! Finding the Python that runs `fixtures/gen/check_onnx.py` (onnx + onnxruntime), shared by
//! the ONNX tests of dl-io and dl-cli (`#[path]`-included; a test helper, not a public API).
//!
//! `DL_RS_ONNX_PYTHON`, else `.venv-onnx/bin/python` at the workspace root, else
//! `.venv/bin/python` if it has them. With none, the check is skipped with a note, except in
//! CI (`CI` set) where that is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// How to get a Python that can run the checker.
pub const INSTALL: &str = "python3 -m venv .venv-onnx && .venv-onnx/bin/pip install onnx==1.23.2 \
                           onnxruntime==1.32.0 numpy==2.4.6 safetensors==0.7.0";

fn has_onnxruntime(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import onnx, onnxruntime, numpy, safetensors"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The Python to run check_onnx.py with, found once; `None` (with a printed note) only outside
/// CI. Panics when `DL_RS_ONNX_PYTHON` names one without the modules, or in CI with none.
pub fn python() -> Option<&'static Path> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if let Some(explicit) = std::env::var_os("DL_RS_ONNX_PYTHON") {
                let explicit = PathBuf::from(explicit);
                assert!(
                    has_onnxruntime(&explicit),
                    "DL_RS_ONNX_PYTHON={} cannot import onnx, onnxruntime, numpy and \
                     safetensors; install them: {INSTALL}",
                    explicit.display()
                );
                return Some(explicit);
            }
            let root = dl_core::fixtures_dir().parent()?.to_path_buf();
            let found = [".venv-onnx/bin/python", ".venv/bin/python"]
                .into_iter()
                .map(|p| root.join(p))
                .find(|p| p.exists() && has_onnxruntime(p));
            if found.is_none() {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "no Python with onnx and onnxruntime for the ONNX parity check; at the \
                     workspace root run: {INSTALL} (or set DL_RS_ONNX_PYTHON)"
                );
                eprintln!(
                    "note: skipping the ONNX Runtime check (no Python with onnx and \
                     onnxruntime; to run it: {INSTALL})"
                );
            }
            found
        })
        .as_deref()
}
