//! The code burn-onnx generated from PyTorch's ONNX export of the chapter's CNN, against
//! PyTorch 2.9.0 itself (`fixtures/onnx_codegen/cnn.safetensors`, written by
//! `fixtures/gen/onnx_codegen.py` together with the `cnn.onnx` that `build.rs` converts).
//!
//! For every case (an image batch), the generated model with its embedded weights runs on the
//! fixture's images and its logits are compared with PyTorch's eval-mode logits. The cases
//! have different batch sizes, which checks the export's dynamic batch axis. Everything runs
//! on Flex and on NdArray through the same function.
#![allow(clippy::unwrap_used)]

use burn::tensor::{Tensor, TensorData};
use dl_core::{BackendKind, Classifier, Fixture, Tolerance, compare};
use dl_onnx_codegen::{INPUT_SHAPE, NUM_CLASSES, OnnxCnn, checked_logits, load_cnn};

/// The workspace default, tighter than the rtol 1e-5, atol 1e-5 the task allows. Measured on
/// Flex and NdArray: max abs error 3.7e-8, max rel error 5.0e-6 (on a logit of -4.4e-3), over
/// logits of magnitude 4.4e-3 to 0.27 (the convolutions and matrix products sum in another
/// order than PyTorch's kernels). The same model with Burn's random initialisation instead of
/// PyTorch's weights must fail this comparison (checked below for every case).
const LOGITS_TOL: Tolerance = Tolerance::new(1e-5, 1e-6);

fn fixture() -> Fixture {
    Fixture::open(dl_core::fixtures_dir().join("onnx_codegen/cnn.safetensors"))
        .expect("fixtures/onnx_codegen/cnn.safetensors (run fixtures/gen/onnx_codegen.py)")
}

/// Every case of the fixture on one backend; returns how many cases ran.
fn logits_match_pytorch(backend: BackendKind) -> usize {
    let fixture = fixture();
    let device = backend.device().unwrap();
    let model = load_cnn(&device).unwrap();
    // The structure without PyTorch's weights: the comparison must tell it apart.
    let unloaded = OnnxCnn::new(&device);
    assert_eq!(model.num_classes(), NUM_CLASSES);
    let cases = fixture.cases().unwrap();
    for (case, cfg) in &cases {
        // The generator's configuration is the one the crate's constants describe.
        let size = cfg["image_size"].as_u64().unwrap() as usize;
        let channels = cfg["in_channels"].as_u64().unwrap() as usize;
        assert_eq!(INPUT_SHAPE, [channels, size, size], "{case}");
        assert_eq!(
            cfg["num_classes"].as_u64(),
            Some(NUM_CLASSES as u64),
            "{case}"
        );

        let images: TensorData = fixture.tensor(&format!("{case}.input")).unwrap();
        let expected = fixture.tensor(&format!("{case}.logits")).unwrap();
        let batch = cfg["batch"].as_u64().unwrap() as usize;
        assert_eq!(
            images.shape().to_vec(),
            vec![batch, channels, size, size],
            "{case}"
        );
        assert_eq!(
            expected.shape().to_vec(),
            vec![batch, NUM_CLASSES],
            "{case}"
        );

        let images = Tensor::<4>::from_data(images, &device);
        let logits = checked_logits(&model, images.clone()).unwrap();
        let report = compare(&logits.to_data(), &expected, LOGITS_TOL);
        println!("{backend} {case}: {report}");
        assert!(report.passed(), "{backend} {case}: {report}");

        let random = checked_logits(&unloaded, images).unwrap();
        let control = compare(&random.to_data(), &expected, LOGITS_TOL);
        assert!(
            !control.passed(),
            "{backend} {case}: random weights pass: {control}"
        );
    }
    cases.len()
}

#[test]
fn generated_cnn_matches_pytorch_on_flex() {
    assert_eq!(logits_match_pytorch(BackendKind::Flex), 2);
}

#[test]
fn generated_cnn_matches_pytorch_on_ndarray() {
    assert_eq!(logits_match_pytorch(BackendKind::NdArray), 2);
}
