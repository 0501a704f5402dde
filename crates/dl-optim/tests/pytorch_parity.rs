//! Training trajectories against PyTorch (`fixtures/optim.safetensors`, made by
//! `fixtures/gen/optim.py`): for every case, 25 steps of our optimizer, schedule and clipping on
//! `nn.Linear(5, 3)` with MSE loss, comparing the weights and bias after every step, the
//! learning rate of every step and, when clipping by norm, the total gradient norm.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use dl_core::{BackendKind, Fixture, Tolerance, compare};
use dl_optim::{FixedLr, GradClip, LrSchedule, ScheduleConfig};
use serde_json::Value;

use common::{Affine, OptimizerSpec, data, fixture, row};

/// Parameters after each step: the default parity tolerance, no looser. Gradients come from
/// Burn's autodiff (a different op order from PyTorch's `addmm`/`mse_loss` backward), so each
/// step starts from values that differ in the last f32 bits and the difference grows slowly
/// over 25 steps. The test prints the worst relative error per case; the ones above 1e-5 are
/// on elements within about 1e-2 of zero, where the absolute part of the tolerance applies.
const PARAMS: Tolerance = Tolerance::new(1e-5, 1e-6);
/// Learning rates: ours in f64 against PyTorch's f64 rate stored as f32 (relative rounding
/// 6e-8), so 1e-6 relative is the spec's closed-form-vs-recursive bound.
const LR: Tolerance = Tolerance::new(1e-6, 0.0);
/// Total gradient norms: one f32 reduction of gradients that carry the same last-bit noise as
/// the parameters.
const GRAD_NORM: Tolerance = Tolerance::new(1e-5, 1e-6);

fn schedule_for(case: &Value, base_lr: f64) -> Arc<dyn LrSchedule> {
    match &case["schedule"] {
        Value::Null => Arc::new(FixedLr::new(base_lr).unwrap()),
        spec => {
            let config: ScheduleConfig = serde_json::from_value(spec.clone()).unwrap();
            config.build(base_lr).unwrap()
        }
    }
}

fn clip_for(case: &Value) -> Option<GradClip> {
    match &case["clip"] {
        Value::Null => None,
        spec => Some(serde_json::from_value(spec.clone()).unwrap()),
    }
}

/// Worst relative error seen for the parameters, for the report.
fn worst(report: &dl_core::CompareReport, so_far: &mut f64) {
    *so_far = so_far.max(report.max_rel_err);
}

fn run_case(kind: BackendKind, fixture: &Fixture, name: &str, case: &Value) -> f64 {
    let device = kind.autodiff_device().unwrap();
    let (x, y) = data(fixture, &device);
    let spec = OptimizerSpec::from_json(&case["optimizer"]);
    let schedule = schedule_for(case, spec.lr());
    let clip = clip_for(case);
    let steps = case["steps"].as_u64().unwrap() as usize;

    let weights = fixture.tensor(&format!("{name}.weight")).unwrap();
    let biases = fixture.tensor(&format!("{name}.bias")).unwrap();
    let lrs = fixture.tensor(&format!("{name}.lr")).unwrap();
    let lrs = lrs.try_to_vec::<f32>().unwrap();
    let norms = fixture.contains(&format!("{name}.grad_norm")).then(|| {
        fixture
            .tensor(&format!("{name}.grad_norm"))
            .unwrap()
            .try_to_vec::<f32>()
            .unwrap()
    });
    assert_eq!(weights.shape().to_vec(), vec![steps + 1, 3, 5]);

    let mut model = Affine::from_fixture(fixture, &device);
    let mut optimizer = spec.init();
    let mut worst_rel = 0.0f64;
    for step in 0..steps {
        let where_ = format!("{kind} {name} step {step}");
        let mut grads = model.grads(x.clone(), y.clone());
        if let Some(clip) = &clip {
            let (clipped, norm) = clip.apply(&model, grads).unwrap();
            grads = clipped;
            if let (Some(norm), Some(expected)) = (norm, &norms) {
                let ok = GRAD_NORM.accepts(norm, f64::from(expected[step]));
                assert!(
                    ok,
                    "{where_}: grad norm {norm} vs PyTorch {}",
                    expected[step]
                );
            }
        }
        let lr = schedule.lr(step);
        assert!(
            LR.accepts(lr, f64::from(lrs[step])),
            "{where_}: lr {lr} vs PyTorch {}",
            lrs[step]
        );
        model = optimizer.step(lr, model, grads);

        let report = compare(
            &model.weight.val().to_data(),
            &row(&weights, step + 1),
            PARAMS,
        );
        assert!(report.passed(), "{where_} weight: {report}");
        worst(&report, &mut worst_rel);
        let report = compare(&model.bias.val().to_data(), &row(&biases, step + 1), PARAMS);
        assert!(report.passed(), "{where_} bias: {report}");
        worst(&report, &mut worst_rel);
    }
    worst_rel
}

fn run_all(kind: BackendKind) {
    let fixture = fixture();
    let cases = fixture.cases().unwrap();
    assert!(cases.len() >= 20, "expected the full case list");
    for (name, case) in &cases {
        let worst = run_case(kind, &fixture, name, case);
        println!("{kind} {name}: worst parameter relative error {worst:.2e}");
    }
}

mod matches_pytorch {
    dl_core::per_backend_tests!(super::run_all);
}
