//! Learning-rate schedules with the meaning of PyTorch's `torch.optim.lr_scheduler` classes.
//!
//! A schedule is a closed-form function from the step index (0 for the first optimizer step)
//! to the learning rate that step uses, so it has no state: resuming a run only needs the step
//! counter. PyTorch's `scheduler.get_last_lr()` before the `t`-th `scheduler.step()` call is
//! `schedule.lr(t)` here.
//!
//! ```
//! use dl_optim::{CosineAnnealingLr, LinearWarmup, LrSchedule, Sequential};
//! use std::sync::Arc;
//! // Five warm-up steps from 0.1 x base to base, then cosine annealing over 20 steps.
//! let warmup = LinearWarmup::new(1e-3, 0.1, 1.0, 5)?;
//! let cosine = CosineAnnealingLr::new(1e-3, 20, 0.0)?;
//! let schedule = Sequential::new(vec![Arc::new(warmup), Arc::new(cosine)], vec![5])?;
//! assert!((schedule.lr(0) - 1e-4).abs() < 1e-12);
//! assert!((schedule.lr(5) - 1e-3).abs() < 1e-12);
//! assert!(schedule.lr(15) < 1e-3);
//! # Ok::<(), dl_core::Error>(())
//! ```

use std::f64::consts::PI;
use std::fmt;
use std::sync::Arc;

use dl_core::validate::{finite, non_negative, positive};
use dl_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// A learning rate as a function of the step index.
pub trait LrSchedule: Send + Sync + fmt::Debug {
    /// The learning rate of step `step` (0 for the first optimizer step).
    fn lr(&self, step: usize) -> f64;

    /// The base learning rate the schedule scales (PyTorch's `initial_lr`).
    fn base_lr(&self) -> f64;
}

impl<S: LrSchedule + ?Sized> LrSchedule for Arc<S> {
    fn lr(&self, step: usize) -> f64 {
        (**self).lr(step)
    }

    fn base_lr(&self) -> f64 {
        (**self).base_lr()
    }
}

impl<S: LrSchedule + ?Sized> LrSchedule for Box<S> {
    fn lr(&self, step: usize) -> f64 {
        (**self).lr(step)
    }

    fn base_lr(&self) -> f64 {
        (**self).base_lr()
    }
}

fn check_base(name: &str, base: f64) -> Result<()> {
    non_negative(&format!("{name} base learning rate"), base)
}

/// The same learning rate at every step (no schedule; not PyTorch's `ConstantLR`, which is
/// [`ConstantLr`]).
///
/// ```
/// use dl_optim::{FixedLr, LrSchedule};
/// assert_eq!(FixedLr::new(0.1)?.lr(1000), 0.1);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixedLr {
    base: f64,
}

impl FixedLr {
    /// A constant schedule; `base` must be finite and `>= 0`.
    pub fn new(base: f64) -> Result<Self> {
        check_base("FixedLr", base)?;
        Ok(Self { base })
    }
}

impl LrSchedule for FixedLr {
    fn lr(&self, _step: usize) -> f64 {
        self.base
    }

    fn base_lr(&self) -> f64 {
        self.base
    }
}

/// `torch.optim.lr_scheduler.ConstantLR`: `base * factor` for the first `total_iters` steps,
/// then `base`.
///
/// ```
/// use dl_optim::{ConstantLr, LrSchedule};
/// let s = ConstantLr::new(1.0, 0.5, 2)?;
/// let lrs: Vec<f64> = (0..4).map(|t| s.lr(t)).collect();
/// assert_eq!(lrs, [0.5, 0.5, 1.0, 1.0]);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConstantLr {
    base: f64,
    factor: f64,
    total_iters: usize,
}

impl ConstantLr {
    /// As PyTorch checks: `factor` in `[0, 1]`.
    pub fn new(base: f64, factor: f64, total_iters: usize) -> Result<Self> {
        check_base("ConstantLr", base)?;
        if !(0.0..=1.0).contains(&factor) {
            return Err(Error::invalid(
                "ConstantLr factor",
                "a number in [0, 1]",
                factor,
            ));
        }
        Ok(Self {
            base,
            factor,
            total_iters,
        })
    }
}

impl LrSchedule for ConstantLr {
    fn lr(&self, step: usize) -> f64 {
        if step < self.total_iters {
            self.base * self.factor
        } else {
            self.base
        }
    }

    fn base_lr(&self) -> f64 {
        self.base
    }
}

/// `torch.optim.lr_scheduler.StepLR`: `base * gamma^(step / step_size)` (integer division).
///
/// ```
/// use dl_optim::{LrSchedule, StepLr};
/// let s = StepLr::new(1.0, 3, 0.5)?;
/// let lrs: Vec<f64> = (0..7).map(|t| s.lr(t)).collect();
/// assert_eq!(lrs, [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLr {
    base: f64,
    step_size: usize,
    gamma: f64,
}

impl StepLr {
    /// Decay by `gamma` every `step_size` steps; `step_size > 0`, `gamma` finite and `>= 0`.
    pub fn new(base: f64, step_size: usize, gamma: f64) -> Result<Self> {
        check_base("StepLr", base)?;
        positive("StepLr step_size", step_size)?;
        non_negative("StepLr gamma", gamma)?;
        Ok(Self {
            base,
            step_size,
            gamma,
        })
    }
}

impl LrSchedule for StepLr {
    fn lr(&self, step: usize) -> f64 {
        self.base * powi(self.gamma, step / self.step_size)
    }

    fn base_lr(&self) -> f64 {
        self.base
    }
}

/// `torch.optim.lr_scheduler.ExponentialLR`: `base * gamma^step`.
///
/// ```
/// use dl_optim::{ExponentialLr, LrSchedule};
/// let s = ExponentialLr::new(1.0, 0.5)?;
/// assert_eq!(s.lr(3), 0.125);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExponentialLr {
    base: f64,
    gamma: f64,
}

impl ExponentialLr {
    /// Decay by `gamma` every step; `gamma` finite and `>= 0`.
    pub fn new(base: f64, gamma: f64) -> Result<Self> {
        check_base("ExponentialLr", base)?;
        non_negative("ExponentialLr gamma", gamma)?;
        Ok(Self { base, gamma })
    }
}

impl LrSchedule for ExponentialLr {
    fn lr(&self, step: usize) -> f64 {
        self.base * powi(self.gamma, step)
    }

    fn base_lr(&self) -> f64 {
        self.base
    }
}

/// `torch.optim.lr_scheduler.CosineAnnealingLR` in closed form:
/// `eta_min + (base - eta_min) * (1 + cos(pi * step / t_max)) / 2`.
///
/// Past `t_max` the cosine continues (the rate climbs back towards `base` over the next
/// `t_max` steps), as PyTorch's recursive form does.
///
/// ```
/// use dl_optim::{CosineAnnealingLr, LrSchedule};
/// let s = CosineAnnealingLr::new(1.0, 10, 0.0)?;
/// assert_eq!(s.lr(0), 1.0);
/// assert!((s.lr(5) - 0.5).abs() < 1e-12);
/// assert!(s.lr(10).abs() < 1e-12);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineAnnealingLr {
    base: f64,
    t_max: usize,
    eta_min: f64,
}

impl CosineAnnealingLr {
    /// Anneal from `base` to `eta_min` over `t_max` steps; `t_max > 0`, `eta_min` finite.
    pub fn new(base: f64, t_max: usize, eta_min: f64) -> Result<Self> {
        check_base("CosineAnnealingLr", base)?;
        positive("CosineAnnealingLr t_max", t_max)?;
        finite("CosineAnnealingLr eta_min", eta_min)?;
        Ok(Self {
            base,
            t_max,
            eta_min,
        })
    }
}

impl LrSchedule for CosineAnnealingLr {
    fn lr(&self, step: usize) -> f64 {
        let phase = PI * step as f64 / self.t_max as f64;
        self.eta_min + (self.base - self.eta_min) * (1.0 + phase.cos()) / 2.0
    }

    fn base_lr(&self) -> f64 {
        self.base
    }
}

/// `torch.optim.lr_scheduler.LinearLR`: the factor goes linearly from `start_factor` to
/// `end_factor` over `total_iters` steps, then stays at `end_factor`:
/// `base * (start + (end - start) * min(step, total_iters) / total_iters)`.
///
/// With `start_factor < end_factor` this is a linear warm-up; the other way round a decay.
///
/// ```
/// use dl_optim::{LinearWarmup, LrSchedule};
/// let s = LinearWarmup::new(1.0, 0.25, 1.0, 3)?;
/// let lrs: Vec<f64> = (0..5).map(|t| s.lr(t)).collect();
/// assert_eq!(lrs, [0.25, 0.5, 0.75, 1.0, 1.0]);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearWarmup {
    base: f64,
    start_factor: f64,
    end_factor: f64,
    total_iters: usize,
}

impl LinearWarmup {
    /// As PyTorch checks: `start_factor` in `(0, 1]`, `end_factor` in `[0, 1]`;
    /// also `total_iters > 0`.
    pub fn new(base: f64, start_factor: f64, end_factor: f64, total_iters: usize) -> Result<Self> {
        check_base("LinearWarmup", base)?;
        if !(start_factor > 0.0 && start_factor <= 1.0) {
            return Err(Error::invalid(
                "LinearWarmup start_factor",
                "a number in (0, 1]",
                start_factor,
            ));
        }
        if !(0.0..=1.0).contains(&end_factor) {
            return Err(Error::invalid(
                "LinearWarmup end_factor",
                "a number in [0, 1]",
                end_factor,
            ));
        }
        positive("LinearWarmup total_iters", total_iters)?;
        Ok(Self {
            base,
            start_factor,
            end_factor,
            total_iters,
        })
    }
}

impl LrSchedule for LinearWarmup {
    fn lr(&self, step: usize) -> f64 {
        let progress = step.min(self.total_iters) as f64 / self.total_iters as f64;
        self.base * (self.start_factor + (self.end_factor - self.start_factor) * progress)
    }

    fn base_lr(&self) -> f64 {
        self.base
    }
}

/// `torch.optim.lr_scheduler.SequentialLR`: schedule `i` runs from milestone `i - 1` (or 0)
/// to milestone `i`, counting its steps from its own start.
///
/// ```
/// use std::sync::Arc;
/// use dl_optim::{FixedLr, ExponentialLr, LrSchedule, Sequential};
/// let s = Sequential::new(
///     vec![Arc::new(FixedLr::new(0.1)?), Arc::new(ExponentialLr::new(1.0, 0.5)?)],
///     vec![2],
/// )?;
/// let lrs: Vec<f64> = (0..5).map(|t| s.lr(t)).collect();
/// assert_eq!(lrs, [0.1, 0.1, 1.0, 0.5, 0.25]);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Sequential {
    schedules: Vec<Arc<dyn LrSchedule>>,
    milestones: Vec<usize>,
}

impl Sequential {
    /// `milestones` must be strictly increasing and one shorter than `schedules` (which must
    /// not be empty), as PyTorch requires.
    pub fn new(schedules: Vec<Arc<dyn LrSchedule>>, milestones: Vec<usize>) -> Result<Self> {
        if schedules.is_empty() {
            return Err(Error::Empty {
                what: "Sequential schedules".into(),
            });
        }
        if milestones.len() + 1 != schedules.len() {
            return Err(Error::invalid(
                "Sequential milestones",
                format!(
                    "{} milestones (one fewer than the {} schedules)",
                    schedules.len() - 1,
                    schedules.len()
                ),
                milestones.len(),
            ));
        }
        if milestones.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::invalid(
                "Sequential milestones",
                "strictly increasing steps",
                format!("{milestones:?}"),
            ));
        }
        Ok(Self {
            schedules,
            milestones,
        })
    }
}

impl LrSchedule for Sequential {
    fn lr(&self, step: usize) -> f64 {
        // bisect_right: the number of milestones at or before `step`.
        let index = self.milestones.partition_point(|&m| m <= step);
        let start = if index == 0 {
            0
        } else {
            self.milestones[index - 1]
        };
        self.schedules[index].lr(step - start)
    }

    fn base_lr(&self) -> f64 {
        self.schedules[0].base_lr()
    }
}

/// `torch.optim.lr_scheduler.ChainedScheduler`: the factors of several schedules multiply,
/// `base * prod_i(lr_i(step) / base)`.
///
/// All schedules must share the base learning rate (in PyTorch they drive one optimizer).
/// PyTorch's chain multiplies each scheduler's recursive step factor into the current rate;
/// for [`StepLr`], [`ExponentialLr`], [`LinearWarmup`], [`ConstantLr`] and [`FixedLr`] that is
/// exactly the
/// product above. (Chaining [`CosineAnnealingLr`] in PyTorch mixes its recursive form with the
/// others' changes, which this closed form does not reproduce.)
///
/// ```
/// use std::sync::Arc;
/// use dl_optim::{Chained, ExponentialLr, LinearWarmup, LrSchedule};
/// let s = Chained::new(vec![
///     Arc::new(LinearWarmup::new(1.0, 0.5, 1.0, 2)?),
///     Arc::new(ExponentialLr::new(1.0, 0.5)?),
/// ])?;
/// let lrs: Vec<f64> = (0..4).map(|t| s.lr(t)).collect();
/// assert_eq!(lrs, [0.5, 0.375, 0.25, 0.125]);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Chained {
    schedules: Vec<Arc<dyn LrSchedule>>,
    base: f64,
}

impl Chained {
    /// `schedules` must not be empty and must all have the same [`LrSchedule::base_lr`].
    pub fn new(schedules: Vec<Arc<dyn LrSchedule>>) -> Result<Self> {
        let Some(first) = schedules.first() else {
            return Err(Error::Empty {
                what: "Chained schedules".into(),
            });
        };
        let base = first.base_lr();
        if let Some(other) = schedules.iter().find(|s| s.base_lr() != base) {
            return Err(Error::invalid(
                "Chained schedule base learning rate",
                format!("the same base as the first schedule, {base}"),
                other.base_lr(),
            ));
        }
        Ok(Self { schedules, base })
    }
}

impl LrSchedule for Chained {
    fn lr(&self, step: usize) -> f64 {
        if self.base == 0.0 {
            return 0.0;
        }
        self.schedules
            .iter()
            .fold(self.base, |lr, s| lr * (s.lr(step) / self.base))
    }

    fn base_lr(&self) -> f64 {
        self.base
    }
}

/// `x^n` for a step count, without overflowing the exponent.
fn powi(x: f64, n: usize) -> f64 {
    match i32::try_from(n) {
        Ok(n) => x.powi(n),
        Err(_) => x.powf(n as f64),
    }
}

/// A schedule as written in a configuration file; [`ScheduleConfig::build`] adds the base
/// learning rate (the optimizer's) and checks every value.
///
/// Serialised with a `type` tag and PyTorch's argument names; missing optional values take
/// PyTorch's defaults (`gamma` 0.1 for `step`, `eta_min` 0, `start_factor` 1/3,
/// `end_factor` 1 and `total_iters` 5 for `linear`, `factor` 1/3 and `total_iters` 5 for
/// `constant`).
///
/// ```
/// use dl_optim::{LrSchedule, ScheduleConfig};
/// let json = r#"{"type": "sequential", "milestones": [5], "schedules": [
///     {"type": "linear", "start_factor": 0.1, "total_iters": 5},
///     {"type": "cosine", "t_max": 20}]}"#;
/// let config: ScheduleConfig = serde_json::from_str(json).unwrap();
/// let schedule = config.build(1e-3)?;
/// assert!((schedule.lr(0) - 1e-4).abs() < 1e-15);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleConfig {
    /// [`FixedLr`]: no schedule.
    Fixed,
    /// [`ConstantLr`] (PyTorch's `ConstantLR`).
    Constant {
        /// Factor of the first `total_iters` steps.
        #[serde(default = "default_start_factor")]
        factor: f64,
        /// Steps at the reduced rate.
        #[serde(default = "default_total_iters")]
        total_iters: usize,
    },
    /// [`StepLr`].
    Step {
        /// Steps between decays.
        step_size: usize,
        /// Decay factor.
        #[serde(default = "default_step_gamma")]
        gamma: f64,
    },
    /// [`ExponentialLr`].
    Exponential {
        /// Decay factor per step.
        gamma: f64,
    },
    /// [`CosineAnnealingLr`].
    Cosine {
        /// Steps from `base` down to `eta_min`.
        t_max: usize,
        /// Lowest learning rate.
        #[serde(default)]
        eta_min: f64,
    },
    /// [`LinearWarmup`] (PyTorch's `LinearLR`).
    Linear {
        /// Factor of the first step.
        #[serde(default = "default_start_factor")]
        start_factor: f64,
        /// Factor from `total_iters` on.
        #[serde(default = "default_end_factor")]
        end_factor: f64,
        /// Steps of the linear ramp.
        #[serde(default = "default_total_iters")]
        total_iters: usize,
    },
    /// [`Sequential`] (PyTorch's `SequentialLR`).
    Sequential {
        /// The schedules, in order.
        schedules: Vec<ScheduleConfig>,
        /// Steps at which the next schedule takes over.
        milestones: Vec<usize>,
    },
    /// [`Chained`] (PyTorch's `ChainedScheduler`).
    Chained {
        /// The schedules whose factors multiply.
        schedules: Vec<ScheduleConfig>,
    },
}

fn default_step_gamma() -> f64 {
    0.1
}

fn default_start_factor() -> f64 {
    1.0 / 3.0
}

fn default_end_factor() -> f64 {
    1.0
}

fn default_total_iters() -> usize {
    5
}

impl ScheduleConfig {
    /// The schedule for base learning rate `base_lr`; every part is checked as its
    /// constructor checks it.
    pub fn build(&self, base_lr: f64) -> Result<Arc<dyn LrSchedule>> {
        let built: Arc<dyn LrSchedule> = match self {
            Self::Fixed => Arc::new(FixedLr::new(base_lr)?),
            Self::Constant {
                factor,
                total_iters,
            } => Arc::new(ConstantLr::new(base_lr, *factor, *total_iters)?),
            Self::Step { step_size, gamma } => Arc::new(StepLr::new(base_lr, *step_size, *gamma)?),
            Self::Exponential { gamma } => Arc::new(ExponentialLr::new(base_lr, *gamma)?),
            Self::Cosine { t_max, eta_min } => {
                Arc::new(CosineAnnealingLr::new(base_lr, *t_max, *eta_min)?)
            }
            Self::Linear {
                start_factor,
                end_factor,
                total_iters,
            } => Arc::new(LinearWarmup::new(
                base_lr,
                *start_factor,
                *end_factor,
                *total_iters,
            )?),
            Self::Sequential {
                schedules,
                milestones,
            } => {
                let parts = schedules
                    .iter()
                    .map(|s| s.build(base_lr))
                    .collect::<Result<Vec<_>>>()?;
                Arc::new(Sequential::new(parts, milestones.clone())?)
            }
            Self::Chained { schedules } => {
                let parts = schedules
                    .iter()
                    .map(|s| s.build(base_lr))
                    .collect::<Result<Vec<_>>>()?;
                Arc::new(Chained::new(parts)?)
            }
        };
        Ok(built)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn step_and_exponential_by_hand() {
        let s = StepLr::new(0.1, 2, 0.1).unwrap();
        assert!(close(s.lr(0), 0.1) && close(s.lr(1), 0.1));
        assert!(close(s.lr(2), 0.01) && close(s.lr(5), 0.001));
        let e = ExponentialLr::new(2.0, 0.9).unwrap();
        assert!(close(e.lr(2), 2.0 * 0.81));
        assert_eq!(e.base_lr(), 2.0);
    }

    #[test]
    fn cosine_by_hand() {
        // cos(pi/3) = 1/2 at step 1 of t_max 3: 0.1 + 0.9 * 1.5 / 2 = 0.775
        let c = CosineAnnealingLr::new(1.0, 3, 0.1).unwrap();
        assert!(close(c.lr(0), 1.0));
        assert!(close(c.lr(1), 0.775));
        assert!(close(c.lr(3), 0.1));
        // Past t_max it climbs back: step 4 mirrors step 2.
        assert!(close(c.lr(4), c.lr(2)));
        assert!(close(c.lr(6), 1.0));
    }

    #[test]
    fn linear_decays_too() {
        let l = LinearWarmup::new(1.0, 1.0, 0.5, 4).unwrap();
        let lrs: Vec<f64> = (0..6).map(|t| l.lr(t)).collect();
        assert_eq!(lrs, [1.0, 0.875, 0.75, 0.625, 0.5, 0.5]);
    }

    #[test]
    fn sequential_counts_each_schedule_from_its_milestone() {
        let s = Sequential::new(
            vec![
                Arc::new(LinearWarmup::new(1.0, 0.5, 1.0, 2).unwrap()),
                Arc::new(StepLr::new(1.0, 2, 0.5).unwrap()),
                Arc::new(ExponentialLr::new(1.0, 0.1).unwrap()),
            ],
            vec![2, 6],
        )
        .unwrap();
        let lrs: Vec<f64> = (0..8).map(|t| s.lr(t)).collect();
        // warm-up 0.5, 0.75 | step 1, 1, 0.5, 0.5 | exponential 1, 0.1
        let expected = [0.5, 0.75, 1.0, 1.0, 0.5, 0.5, 1.0, 0.1];
        for (a, b) in lrs.iter().zip(expected) {
            assert!(close(*a, b), "{lrs:?}");
        }
    }

    #[test]
    fn chained_multiplies_factors_and_handles_zero_base() {
        let c = Chained::new(vec![
            Arc::new(StepLr::new(0.2, 2, 0.5).unwrap()),
            Arc::new(ExponentialLr::new(0.2, 0.5).unwrap()),
        ])
        .unwrap();
        // step 3: 0.2 * 0.5 (step) * 0.125 (exponential)
        assert!(close(c.lr(3), 0.2 * 0.5 * 0.125));
        let zero = Chained::new(vec![Arc::new(FixedLr::new(0.0).unwrap())]).unwrap();
        assert_eq!(zero.lr(3), 0.0);
    }

    #[test]
    fn invalid_schedules_are_errors() {
        assert!(StepLr::new(0.1, 0, 0.1).is_err());
        let err = ConstantLr::new(0.1, 1.5, 3).unwrap_err();
        assert!(err.to_string().contains("ConstantLr factor"), "{err}");
        assert!(ConstantLr::new(0.1, f64::NAN, 3).is_err());
        assert!(FixedLr::new(f64::INFINITY).is_err());
        assert!(StepLr::new(-0.1, 1, 0.1).is_err());
        assert!(ExponentialLr::new(0.1, f64::NAN).is_err());
        assert!(CosineAnnealingLr::new(0.1, 0, 0.0).is_err());
        assert!(CosineAnnealingLr::new(0.1, 10, f64::INFINITY).is_err());
        let err = LinearWarmup::new(0.1, 0.0, 1.0, 5).unwrap_err();
        assert!(err.to_string().contains("start_factor"), "{err}");
        assert!(LinearWarmup::new(0.1, 0.5, 1.5, 5).is_err());
        assert!(LinearWarmup::new(0.1, 0.5, 1.0, 0).is_err());
        let one = || -> Arc<dyn LrSchedule> { Arc::new(FixedLr::new(0.1).unwrap()) };
        assert!(Sequential::new(vec![], vec![]).is_err());
        assert!(Sequential::new(vec![one(), one()], vec![]).is_err());
        assert!(Sequential::new(vec![one(), one(), one()], vec![5, 5]).is_err());
        assert!(Chained::new(vec![]).is_err());
        let other: Arc<dyn LrSchedule> = Arc::new(FixedLr::new(0.2).unwrap());
        let err = Chained::new(vec![one(), other]).unwrap_err();
        assert!(err.to_string().contains("base learning rate"), "{err}");
    }

    #[test]
    fn config_round_trips_through_json_with_pytorch_defaults() {
        let config: ScheduleConfig = serde_json::from_str(r#"{"type": "linear"}"#).unwrap();
        assert_eq!(
            config,
            ScheduleConfig::Linear {
                start_factor: 1.0 / 3.0,
                end_factor: 1.0,
                total_iters: 5
            }
        );
        let config = ScheduleConfig::Chained {
            schedules: vec![
                ScheduleConfig::Step {
                    step_size: 3,
                    gamma: 0.5,
                },
                ScheduleConfig::Cosine {
                    t_max: 10,
                    eta_min: 0.0,
                },
            ],
        };
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(
            serde_json::from_str::<ScheduleConfig>(&json).unwrap(),
            config
        );
        assert!(serde_json::from_str::<ScheduleConfig>(r#"{"type": "warp"}"#).is_err());
        assert!(
            ScheduleConfig::Step {
                step_size: 0,
                gamma: 0.1
            }
            .build(0.1)
            .is_err()
        );
    }
}
