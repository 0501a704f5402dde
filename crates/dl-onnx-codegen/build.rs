//! Turns `fixtures/onnx_codegen/cnn.onnx` (written by `fixtures/gen/onnx_codegen.py`) into Burn
//! code with burn-onnx: `$OUT_DIR/model/cnn.rs` (the `Model` struct and its `forward`) and
//! `$OUT_DIR/model/cnn.bpk` (its weights, which `src/lib.rs` embeds and loads).

use std::path::Path;

use burn_onnx::{LoadStrategy, ModelGen};

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let onnx = Path::new(&manifest).join("../../fixtures/onnx_codegen/cnn.onnx");
    println!("cargo:rerun-if-changed={}", onnx.display());
    println!("cargo:rerun-if-changed=build.rs");
    assert!(
        onnx.is_file(),
        "{} is missing: run `.venv/bin/python fixtures/gen/onnx_codegen.py`",
        onnx.display()
    );
    let onnx = onnx.to_str().expect("the workspace path is UTF-8");
    // `LoadStrategy::None`: no generated constructors that panic on a load error; the
    // library embeds the .bpk itself and returns a `dl_core::Error` instead.
    ModelGen::new()
        .input(onnx)
        .out_dir("model/")
        .load_strategy(LoadStrategy::None)
        .run_from_script();
}
