//! The parity suite, run once per CPU backend (the same checks as `cargo xtask parity`).

use dl_core::{BackendKind, Fixture, fixtures_dir};
use dl_io::StateDict;
use dl_parity::{Check, ModelKind, PARITY_MODELS, Reference, run_parity};

fn fixture() -> Fixture {
    Fixture::open(fixtures_dir().join("models.safetensors")).expect("models fixture")
}

fn suite(backend: BackendKind) {
    let backends = if backend == BackendKind::Flex {
        vec![BackendKind::Flex]
    } else {
        vec![BackendKind::Flex, backend]
    };
    let report = run_parity(&fixture(), &PARITY_MODELS, &backends, None);
    assert!(report.passed(), "\n{}", report.to_markdown());
    // Every model has its rows: 5 checks for the classifiers, 6 for the transformer, 2 for
    // the from-scratch network, per backend and reference.
    let rows_for = |b: BackendKind| report.rows.iter().filter(|r| r.backend == b.name()).count();
    let per_backend = 5 * 4 + 6 + 2;
    assert_eq!(rows_for(BackendKind::Flex), per_backend);
    if backend != BackendKind::Flex {
        assert_eq!(
            rows_for(backend),
            2 * per_backend,
            "against PyTorch and against flex"
        );
    }
}

#[test]
fn flex_matches_pytorch() {
    suite(BackendKind::Flex);
}

#[test]
fn ndarray_matches_pytorch_and_flex() {
    suite(BackendKind::NdArray);
}

/// A deliberately wrong weight fails the right cells, with a report that names the tensor.
#[test]
fn a_wrong_weight_fails_the_right_cells() {
    fn nudge(state: &mut StateDict) {
        let data = state.get("fc2.bias").expect("cnn fc2.bias").clone();
        let mut values = data.clone().try_into_vec::<f32>().expect("f32");
        values[0] += 0.5;
        state.insert(
            "fc2.bias",
            burn::tensor::TensorData::new(values, data.shape().to_vec()),
        );
    }
    let report = run_parity(
        &fixture(),
        &[ModelKind::Cnn],
        &[BackendKind::Flex],
        Some(nudge),
    );
    let failed: Vec<_> = report.failures().map(|r| r.check).collect();
    for check in [
        Check::Logits,
        Check::Loss,
        Check::Grads,
        Check::Adam10,
        Check::Sgd10,
    ] {
        assert!(
            failed.contains(&check),
            "{check:?} should fail:\n{}",
            report.to_markdown()
        );
    }
    let grads = report
        .rows
        .iter()
        .find(|r| r.check == Check::Sgd10 && r.reference == Reference::Pytorch)
        .expect("sgd row");
    assert!(grads.detail.contains("`fc2.bias`"), "{}", grads.detail);
    let table = report.to_markdown();
    assert!(
        table.contains("| cnn | flex | logits | pytorch |"),
        "{table}"
    );
    assert!(table.contains("**FAIL**"), "{table}");
}

#[test]
fn missing_backends_are_listed_with_their_feature() {
    let missing: Vec<BackendKind> = BackendKind::ALL
        .into_iter()
        .filter(|b| !b.is_compiled())
        .collect();
    let report = run_parity(&fixture(), &[ModelKind::Mlp], &missing, None);
    assert!(report.rows.is_empty());
    assert_eq!(report.skipped.len(), missing.len());
    for (skipped, backend) in report.skipped.iter().zip(&missing) {
        assert_eq!(skipped.feature, backend.cargo_feature());
        assert!(report.to_markdown().contains(&format!(
            "enable the cargo feature `{}`",
            backend.cargo_feature()
        )));
    }
}
