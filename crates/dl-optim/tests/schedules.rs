//! Learning-rate schedules against PyTorch's schedulers: `sched.{name}` in
//! `fixtures/optim.safetensors` holds the rate PyTorch reported before each of 100
//! `scheduler.step()` calls, and the `schedules` metadata the serde form of our
//! `ScheduleConfig` plus the base rate. No tensors are involved, so there is no backend here.

#![allow(clippy::unwrap_used)]

mod common;

use burn::lr_scheduler::LrScheduler;
use dl_core::Tolerance;
use dl_optim::{ScheduleConfig, ScheduledLr};
use serde_json::Value;

/// Our closed forms in f64 against PyTorch's (mostly recursive) f64 values, stored as f32
/// (relative rounding 6e-8): 1e-6 relative, as the spec asks of the cosine closed form. The
/// absolute part covers rates that PyTorch's recursion brings to within 1e-12 of zero.
const LR: Tolerance = Tolerance::new(1e-6, 1e-12);

#[test]
fn every_schedule_matches_pytorch() {
    let fixture = common::fixture();
    let schedules: Value = serde_json::from_str(fixture.metadata("schedules").unwrap()).unwrap();
    let schedules = schedules.as_object().unwrap();
    assert!(schedules.len() >= 10, "expected the full schedule list");
    for (name, entry) in schedules {
        let config: ScheduleConfig = serde_json::from_value(entry["schedule"].clone()).unwrap();
        let base = entry["base_lr"].as_f64().unwrap();
        let schedule = config.build(base).unwrap();
        let expected = fixture.tensor(&format!("sched.{name}")).unwrap();
        let expected = expected.try_to_vec::<f32>().unwrap();
        assert_eq!(expected.len(), entry["steps"].as_u64().unwrap() as usize);

        // The closed form, and the same values through Burn's `LrScheduler` adapter.
        let mut scheduler = ScheduledLr::from_arc(schedule.clone());
        for (step, &want) in expected.iter().enumerate() {
            let got = schedule.lr(step);
            assert!(
                LR.accepts(got, f64::from(want)),
                "{name} step {step}: {got} vs PyTorch {want}"
            );
            assert_eq!(scheduler.step(), got, "{name} step {step} via LrScheduler");
        }
    }
}
