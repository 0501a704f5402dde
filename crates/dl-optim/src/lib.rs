//! Optimizers with PyTorch's update rules, learning-rate schedules and gradient clipping,
//! plugged into Burn's optimizer machinery.
//!
//! - [`Sgd`], [`Adam`], [`AdamW`] and [`RmsProp`] implement Burn's per-tensor
//!   [`Optimizer`](burn::optim::Optimizer) trait with the update rules, operation order and
//!   defaults of `torch.optim` (not Burn's defaults, which differ: Adam's eps, SGD's dampening,
//!   RMSprop's momentum). Each `XConfig::init()` checks the settings and returns Burn's
//!   [`ModuleOptimizer`](burn::optim::ModuleOptimizer), which steps a whole module and saves
//!   and restores the per-parameter state (`to_record`, `into_bytes`, `from_bytes`).
//! - [`LrSchedule`] and its implementations ([`StepLr`], [`ExponentialLr`], [`ConstantLr`],
//!   [`CosineAnnealingLr`], [`LinearWarmup`], [`Sequential`], [`Chained`]) give the learning
//!   rate of each step in closed form, as `torch.optim.lr_scheduler` does; [`ScheduleConfig`]
//!   reads them from configuration files and [`ScheduledLr`] adapts them to Burn's
//!   `LrScheduler`.
//! - [`clip_grad_norm`] and [`clip_grad_value`] clip the gradients of a whole module as
//!   `torch.nn.utils.clip_grad_norm_` and `clip_grad_value_` do.
//!
//! ```
//! use burn::module::{Module, Param};
//! use burn::optim::GradientsParams;
//! use burn::tensor::Tensor;
//! use dl_optim::{clip_grad_norm, AdamConfig, CosineAnnealingLr, LrSchedule, NormType};
//!
//! #[derive(Module, Debug)]
//! struct Line { w: Param<Tensor<1>> }
//!
//! let device = dl_core::BackendKind::Flex.autodiff_device()?;
//! let mut line = Line { w: Param::from_tensor(Tensor::from_floats([2.0], &device)) };
//! let config = AdamConfig::new().with_lr(0.1);
//! let mut optimizer = config.init()?;
//! let schedule = CosineAnnealingLr::new(config.lr, 50, 0.0)?;
//! for step in 0..50 {
//!     let loss = line.w.val().square().sum(); // minimum at w = 0
//!     let grads = GradientsParams::from_grads(loss.backward(), &line);
//!     let (grads, _norm) = clip_grad_norm(&line, grads, 1.0, NormType::Two)?;
//!     line = optimizer.step(schedule.lr(step), line, grads);
//! }
//! assert!(line.w.val().into_scalar::<f32>().abs() < 1.0);
//! # Ok::<(), dl_core::Error>(())
//! ```

mod adam;
mod adamw;
mod clip;
mod lr_scheduler;
mod record;
mod rmsprop;
mod schedule;
mod sgd;

pub use adam::{Adam, AdamConfig, AdamState};
pub use adamw::{AdamW, AdamWConfig};
pub use clip::{GradClip, NormType, clip_grad_norm, clip_grad_value};
pub use lr_scheduler::ScheduledLr;
pub use rmsprop::{RmsProp, RmsPropConfig, RmsPropState};
pub use schedule::{
    Chained, ConstantLr, CosineAnnealingLr, ExponentialLr, FixedLr, LinearWarmup, LrSchedule,
    ScheduleConfig, Sequential, StepLr,
};
pub use sgd::{Sgd, SgdConfig, SgdState};
