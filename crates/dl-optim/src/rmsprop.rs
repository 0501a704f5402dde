//! RMSprop with PyTorch's update rule (`torch.optim.RMSprop`).

use burn::config::Config;
use burn::optim::{ModuleOptimizer, Optimizer, RecordState, StateSink, StateSource};
use burn::tensor::{Device, Tensor};
use dl_core::Result;
use dl_core::validate::non_negative;

use crate::adam::lerp;
use crate::record::{push_count, push_optional_tensor, push_tensor, take_count, take_tensor};

/// Configuration of [`RmsProp`], with `torch.optim.RMSprop`'s defaults.
///
/// Unlike Burn's own RMSprop, `momentum` defaults to 0 (Burn: 0.9) and `eps` is added after the
/// square root, as PyTorch does. `alpha` is the smoothing constant some texts call `rho`.
///
/// ```
/// use dl_optim::RmsPropConfig;
/// let optimizer = RmsPropConfig::new().with_centered(true).with_momentum(0.9).init()?;
/// assert!(RmsPropConfig::new().with_alpha(-0.5).init().is_err());
/// # let _ = optimizer;
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Config, Debug)]
pub struct RmsPropConfig {
    /// Learning rate to pass to `step` when no schedule drives it (PyTorch default 1e-2).
    #[config(default = 1e-2)]
    pub lr: f64,
    /// Smoothing constant of the squared-gradient average (`rho`).
    #[config(default = 0.99)]
    pub alpha: f64,
    /// Added to the denominator for numerical stability.
    #[config(default = 1e-8)]
    pub eps: f64,
    /// L2 penalty: `weight_decay * param` is added to the gradient.
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// Momentum factor; 0 applies the scaled gradient directly.
    #[config(default = 0.0)]
    pub momentum: f64,
    /// Normalise by an estimate of the gradient's variance instead of its second moment.
    #[config(default = false)]
    pub centered: bool,
}

impl RmsPropConfig {
    /// Check every setting against PyTorch's rules: `lr`, `alpha`, `eps`, `weight_decay` and
    /// `momentum` finite and `>= 0`.
    pub fn validate(&self) -> Result<()> {
        non_negative("RMSprop lr", self.lr)?;
        non_negative("RMSprop alpha", self.alpha)?;
        non_negative("RMSprop eps", self.eps)?;
        non_negative("RMSprop weight_decay", self.weight_decay)?;
        non_negative("RMSprop momentum", self.momentum)
    }

    /// The per-tensor optimizer, for
    /// [`ModuleOptimizer::with_group`](burn::optim::ModuleOptimizer::with_group).
    pub fn build(&self) -> Result<RmsProp> {
        self.validate()?;
        Ok(RmsProp {
            alpha: self.alpha,
            eps: self.eps,
            weight_decay: self.weight_decay,
            momentum: self.momentum,
            centered: self.centered,
        })
    }

    /// An optimizer for a whole module: `optimizer.step(lr, module, grads)`.
    pub fn init(&self) -> Result<ModuleOptimizer> {
        Ok(ModuleOptimizer::from(self.build()?))
    }
}

/// RMSprop (Hinton), optionally centered and with momentum.
///
/// For each parameter `p` with gradient `g`, exactly as `torch.optim.RMSprop`'s single-tensor
/// path (every average starts at zero):
///
/// ```text
/// g = g + weight_decay * p                              (if weight_decay != 0)
/// square_avg = alpha * square_avg + (1 - alpha) * g * g
/// grad_avg = grad_avg.lerp(g, 1 - alpha)                (centered)
/// avg = sqrt(square_avg - grad_avg^2) + eps   if centered   else   sqrt(square_avg) + eps
/// buf = momentum * buf + g / avg;  p = p - lr * buf     (if momentum > 0)
/// p = p - lr * g / avg                                  (otherwise)
/// ```
#[derive(Clone, Debug)]
pub struct RmsProp {
    alpha: f64,
    eps: f64,
    weight_decay: f64,
    momentum: f64,
    centered: bool,
}

/// Per-parameter state of [`RmsProp`], as PyTorch names it.
#[derive(Clone, Debug)]
pub struct RmsPropState<const D: usize> {
    /// Number of steps taken (PyTorch's `step`; not used by the update).
    pub step: usize,
    /// Running average of the squared gradient.
    pub square_avg: Tensor<D>,
    /// Running average of the gradient, only when centered.
    pub grad_avg: Option<Tensor<D>>,
    /// Momentum buffer, only when momentum > 0.
    pub momentum_buffer: Option<Tensor<D>>,
}

impl<const D: usize> RecordState for RmsPropState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        push_count(out, prefix, "step", self.step);
        push_tensor(out, prefix, "square_avg", &self.square_avg);
        push_optional_tensor(out, prefix, "grad_avg", self.grad_avg.as_ref());
        push_optional_tensor(
            out,
            prefix,
            "momentum_buffer",
            self.momentum_buffer.as_ref(),
        );
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        Some(Self {
            step: take_count(src, prefix, "step")?,
            square_avg: take_tensor(src, prefix, "square_avg", device)?,
            grad_avg: take_tensor(src, prefix, "grad_avg", device),
            momentum_buffer: take_tensor(src, prefix, "momentum_buffer", device),
        })
    }
}

impl Optimizer for RmsProp {
    type State<const D: usize> = RmsPropState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<RmsPropState<D>>,
    ) -> (Tensor<D>, Option<RmsPropState<D>>) {
        let RmsPropState {
            step,
            square_avg,
            grad_avg,
            momentum_buffer,
        } = state.unwrap_or_else(|| RmsPropState {
            step: 0,
            square_avg: tensor.zeros_like(),
            grad_avg: None,
            momentum_buffer: None,
        });
        let mut grad = grad;
        if self.weight_decay != 0.0 {
            grad = grad.add(tensor.clone().mul_scalar(self.weight_decay));
        }

        // square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        let square_avg = square_avg
            .mul_scalar(self.alpha)
            .add(grad.clone().mul_scalar(1.0 - self.alpha).mul(grad.clone()));

        let (grad_avg, avg) = if self.centered {
            let previous = grad_avg.unwrap_or_else(|| tensor.zeros_like());
            let grad_avg = lerp(previous, grad.clone(), 1.0 - self.alpha);
            // square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
            let variance = square_avg
                .clone()
                .add(grad_avg.clone().mul_scalar(-1.0).mul(grad_avg.clone()));
            (Some(grad_avg), variance.sqrt())
        } else {
            (None, square_avg.clone().sqrt())
        };
        let avg = avg.add_scalar(self.eps);

        let (tensor, momentum_buffer) = if self.momentum > 0.0 {
            let previous = momentum_buffer.unwrap_or_else(|| tensor.zeros_like());
            // buf.mul_(momentum).addcdiv_(grad, avg); param.add_(buf, alpha=-lr)
            let buf = previous.mul_scalar(self.momentum).add(grad.div(avg));
            (tensor.add(buf.clone().mul_scalar(-lr)), Some(buf))
        } else {
            // param.addcdiv_(grad, avg, value=-lr)
            (tensor.add(grad.mul_scalar(-lr).div(avg)), None)
        };

        let state = RmsPropState {
            step: step + 1,
            square_avg,
            grad_avg,
            momentum_buffer,
        };
        (tensor, Some(state))
    }

    fn to_device<const D: usize>(state: RmsPropState<D>, device: &Device) -> RmsPropState<D> {
        RmsPropState {
            step: state.step,
            square_avg: state.square_avg.to_device(device),
            grad_avg: state.grad_avg.map(|t| t.to_device(device)),
            momentum_buffer: state.momentum_buffer.map(|t| t.to_device(device)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dl_core::BackendKind;

    #[test]
    fn defaults_are_pytorchs() {
        let c = RmsPropConfig::new();
        assert_eq!(
            (c.lr, c.alpha, c.eps, c.weight_decay, c.momentum, c.centered),
            (1e-2, 0.99, 1e-8, 0.0, 0.0, false)
        );
    }

    #[test]
    fn invalid_settings_are_errors_naming_the_setting() {
        let cases = [
            (RmsPropConfig::new().with_lr(-0.01), "RMSprop lr"),
            (RmsPropConfig::new().with_alpha(-0.9), "RMSprop alpha"),
            (RmsPropConfig::new().with_eps(f64::NAN), "RMSprop eps"),
            (
                RmsPropConfig::new().with_weight_decay(-1.0),
                "RMSprop weight_decay",
            ),
            (RmsPropConfig::new().with_momentum(-0.9), "RMSprop momentum"),
        ];
        for (config, what) in cases {
            let err = config.build().err().unwrap();
            assert!(err.to_string().contains(what), "{err}");
        }
    }

    #[test]
    fn first_steps_by_hand() {
        // alpha 0.75, g = 2 (eps 0 for round numbers):
        // plain:    square_avg = 0.25 * 4 = 1; p = 1 - 0.1 * 2 / 1 = 0.8
        // centered: grad_avg = 0.25 * 2 = 0.5; avg = sqrt(1 - 0.25); p = 1 - 0.2 / sqrt(0.75)
        // momentum 0.5, second step g = 2 again: square_avg = 0.75 + 1 = 1.75,
        //           buf = 0.5 * 2 + 2 / sqrt(1.75)
        let device = BackendKind::Flex.device().unwrap();
        let one = || Tensor::<1>::from_floats([1.0], &device);
        let two = || Tensor::<1>::from_floats([2.0], &device);
        let base = RmsPropConfig::new().with_alpha(0.75).with_eps(0.0);
        let (p, _) = base.build().unwrap().step(0.1, one(), two(), None);
        assert!((p.into_scalar::<f32>() - 0.8).abs() < 1e-6);
        let centered = base.clone().with_centered(true).build().unwrap();
        let (p, state) = centered.step(0.1, one(), two(), None);
        let expected = 1.0 - 0.2 / 0.75f32.sqrt();
        assert!((p.into_scalar::<f32>() - expected).abs() < 1e-6);
        assert!((state.unwrap().grad_avg.unwrap().into_scalar::<f32>() - 0.5).abs() < 1e-7);
        let momentum = base.with_momentum(0.5).build().unwrap();
        let (p, state) = momentum.step(0.1, one(), two(), None);
        let (_, state) = momentum.step(0.1, p, two(), state);
        let state = state.unwrap();
        assert_eq!(state.step, 2);
        let buf = state.momentum_buffer.unwrap().into_scalar::<f32>();
        assert!((buf - (1.0 + 2.0 / 1.75f32.sqrt())).abs() < 1e-6, "{buf}");
    }
}
