//! Batch normalisation over the channels of images, as `torch.nn.BatchNorm2d`.

use burn::config::Config;
use burn::module::{Flag, Module, Param, RunningState};
use burn::nn::Initializer;
use burn::tensor::{Device, Tensor};
use dl_core::{Error, Result, validate};

/// Configuration of a [`BatchNorm2d`] layer (PyTorch's defaults).
#[derive(Config, Debug)]
pub struct BatchNorm2dConfig {
    /// Number of channels `C`.
    pub num_features: usize,
    /// Added to the variance before the square root (PyTorch: 1e-5).
    #[config(default = 1e-5)]
    pub eps: f64,
    /// Weight of the new batch statistic in the running averages (PyTorch: 0.1).
    #[config(default = 0.1)]
    pub momentum: f64,
}

/// `torch.nn.BatchNorm2d(num_features, eps, momentum)` with `affine=True`,
/// `track_running_stats=True`.
///
/// In training (autodiff device and training flag on, see [`crate::set_training`]) the input
/// is normalised with the batch mean and the *biased* batch variance over `[N, H, W]`, and the
/// running statistics move by `running = (1 − momentum) · running + momentum · batch`, where the
/// variance fed into `running_var` is the *unbiased* one (`n / (n − 1)` times the biased one,
/// `n = N·H·W`) — PyTorch's rule. Burn's own [`BatchNorm`](burn::nn::BatchNorm) feeds the biased
/// variance into its running average, which is why this layer exists. In evaluation the running
/// statistics normalise the input.
///
/// # PyTorch keys
///
/// | key | shape | here |
/// |---|---|---|
/// | `weight` | `[C]` | `weight` (γ, initialised to 1) |
/// | `bias` | `[C]` | `bias` (β, initialised to 0) |
/// | `running_mean` | `[C]` | `running_mean` (buffer, initialised to 0) |
/// | `running_var` | `[C]` | `running_var` (buffer, initialised to 1) |
/// | `num_batches_tracked` | `[]` (int64) | not stored: PyTorch uses it only when `momentum=None` |
///
/// The two running statistics are Burn [`RunningState`]s: they are saved in records, move with
/// the device and can be updated during a forward pass, but Burn's
/// [`num_params`](Module::num_params) counts them (PyTorch's `parameters()` does not); subtract
/// [`BatchNorm2d::buffer_count`] for PyTorch's parameter count.
///
/// ```
/// use burn::module::Module;
/// use burn::tensor::Tensor;
/// use dl_layers::BatchNorm2dConfig;
///
/// let device = dl_core::BackendKind::Flex.device()?;
/// let bn = BatchNorm2dConfig::new(3).init(&device)?;
/// // Evaluation on a plain device: running statistics 0 and 1, so y = x / sqrt(1 + eps).
/// let y = bn.forward(Tensor::<4>::ones([2, 3, 4, 4], &device));
/// assert_eq!(y.dims(), [2, 3, 4, 4]);
/// assert_eq!(bn.num_params() - bn.buffer_count(), 6);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Module, Debug)]
pub struct BatchNorm2d {
    /// Scale γ, `[C]`.
    pub weight: Param<Tensor<1>>,
    /// Shift β, `[C]`.
    pub bias: Param<Tensor<1>>,
    /// Running mean, `[C]`.
    pub running_mean: RunningState<Tensor<1>>,
    /// Running (unbiased) variance, `[C]`.
    pub running_var: RunningState<Tensor<1>>,
    /// Whether to behave as in training when the input is on an autodiff device.
    pub training: Param<Flag>,
    /// Added to the variance before the square root.
    pub eps: f64,
    /// Weight of the new batch statistic in the running averages.
    pub momentum: f64,
}

impl BatchNorm2dConfig {
    /// Build the layer: γ = 1, β = 0, running mean 0, running variance 1.
    ///
    /// Fails when `num_features` is 0, `eps` is not finite and positive, or `momentum` is not
    /// in `[0, 1]`.
    pub fn init(&self, device: &Device) -> Result<BatchNorm2d> {
        validate::positive("batch norm num_features", self.num_features)?;
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(Error::invalid(
                "batch norm eps",
                "a finite value > 0",
                self.eps,
            ));
        }
        if !(self.momentum.is_finite() && (0.0..=1.0).contains(&self.momentum)) {
            return Err(Error::invalid(
                "batch norm momentum",
                "a value in [0, 1]",
                self.momentum,
            ));
        }
        let c = self.num_features;
        Ok(BatchNorm2d {
            weight: Initializer::Ones.init([c], device),
            bias: Initializer::Zeros.init([c], device),
            running_mean: RunningState::new(Tensor::zeros([c], device)),
            running_var: RunningState::new(Tensor::ones([c], device)),
            training: Param::from_bool(true),
            eps: self.eps,
            momentum: self.momentum,
        })
    }
}

impl BatchNorm2d {
    /// Number of channels.
    pub fn num_features(&self) -> usize {
        self.weight.shape().dims::<1>()[0]
    }

    /// Number of buffer elements (running mean and variance) that Burn's `num_params` counts
    /// and PyTorch's `parameters()` does not: `2 · C`.
    pub fn buffer_count(&self) -> usize {
        2 * self.num_features()
    }

    /// Whether a forward pass on `device` normalises with batch statistics.
    pub fn is_training_on(&self, device: &Device) -> bool {
        device.is_autodiff() && self.training.is_enabled()
    }

    /// `[N, C, H, W]` → `[N, C, H, W]`.
    ///
    /// # Panics
    ///
    /// On the inputs [`BatchNorm2d::try_forward`] rejects.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        validate::or_panic(self.try_forward(x))
    }

    /// [`BatchNorm2d::forward`], failing when the channel axis is not `C` or, in training, when
    /// a channel has a single value (`N·H·W = 1`, for which PyTorch raises too).
    pub fn try_forward(&self, x: Tensor<4>) -> Result<Tensor<4>> {
        let dims = x.dims();
        let c = self.num_features();
        if dims[1] != c {
            return Err(Error::shape_mismatch(
                "batch norm input",
                &[dims[0], c, dims[2], dims[3]],
                &dims,
            ));
        }
        if !self.is_training_on(&x.device()) {
            let device = x.device();
            return Ok(burn::tensor::module::batch_norm(
                x,
                self.weight.val(),
                self.bias.val(),
                self.running_mean.value_sync().to_device(&device),
                self.running_var.value_sync().to_device(&device),
                self.eps,
            ));
        }
        let n = dims[0] * dims[2] * dims[3];
        if n < 2 {
            return Err(Error::invalid(
                "batch norm training input",
                "more than one value per channel (N·H·W > 1)",
                format!("shape {dims:?}"),
            ));
        }
        let device = x.device();
        let result =
            burn::tensor::module::batch_norm_train(x, self.weight.val(), self.bias.val(), self.eps);
        let unbiased = result.variance.detach() * (n as f64 / (n as f64 - 1.0));
        let m = self.momentum;
        let mean = self.running_mean.value_sync().to_device(&device) * (1.0 - m)
            + result.mean.detach() * m;
        let var = self.running_var.value_sync().to_device(&device) * (1.0 - m) + unbiased * m;
        self.running_mean.update(mean.detach());
        self.running_var.update(var.detach());
        Ok(result.output)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::set_training;
    use crate::test_util::values;
    use dl_core::BackendKind;

    /// One channel, N·H·W = 4 values 1, 2, 3, 6: mean 3, biased variance (4+1+0+9)/4 = 3.5,
    /// unbiased 14/3.
    fn one_channel(device: &Device) -> Tensor<4> {
        Tensor::<4>::from_floats([[[[1.0, 2.0], [3.0, 6.0]]]], device)
    }

    #[test]
    fn training_uses_batch_statistics_and_pytorch_running_update() {
        let device = BackendKind::Flex.autodiff_device().unwrap();
        let bn = BatchNorm2dConfig::new(1).init(&device).unwrap();
        assert!(bn.is_training_on(&device));
        let y = values(bn.forward(one_channel(&device)));
        let sd = (3.5f64 + 1e-5).sqrt();
        for (got, x) in y.iter().zip([1.0, 2.0, 3.0, 6.0]) {
            assert!((got - (x - 3.0) / sd).abs() < 1e-5, "{y:?}");
        }
        // running_mean = 0.9·0 + 0.1·3 = 0.3; running_var = 0.9·1 + 0.1·14/3 = 1.366667
        let mean = values(bn.running_mean.value_sync());
        let var = values(bn.running_var.value_sync());
        assert!((mean[0] - 0.3).abs() < 1e-6, "{mean:?}");
        assert!((var[0] - (0.9 + 1.4 / 3.0)).abs() < 1e-6, "{var:?}");
    }

    #[test]
    fn evaluation_uses_running_statistics() {
        // On a plain device, and on an autodiff device with the flag off (PyTorch's eval()).
        for device in [
            BackendKind::Flex.device().unwrap(),
            BackendKind::Flex.autodiff_device().unwrap(),
        ] {
            let bn = set_training(BatchNorm2dConfig::new(1).init(&device).unwrap(), false);
            assert!(!bn.is_training_on(&device));
            let y = values(bn.forward(one_channel(&device)));
            let scale = 1.0 / (1.0f64 + 1e-5).sqrt();
            assert!((y[3] - 6.0 * scale).abs() < 1e-5, "{y:?}");
            assert_eq!(values(bn.running_mean.value_sync()), vec![0.0]);
        }
    }

    #[test]
    fn buffers_are_counted_separately() {
        let device = BackendKind::Flex.device().unwrap();
        let bn = BatchNorm2dConfig::new(5).init(&device).unwrap();
        assert_eq!(bn.num_params(), 20);
        assert_eq!(bn.buffer_count(), 10);
        // weight, bias, running_mean, running_var are all saved (the flag is not).
        assert_eq!(bn.into_record().len(), 4);
    }

    #[test]
    fn invalid_configs_and_inputs() {
        let device = BackendKind::Flex.autodiff_device().unwrap();
        assert!(BatchNorm2dConfig::new(0).init(&device).is_err());
        let err = BatchNorm2dConfig::new(2)
            .with_eps(0.0)
            .init(&device)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid batch norm eps: expected a finite value > 0, got 0"
        );
        assert!(
            BatchNorm2dConfig::new(2)
                .with_momentum(1.5)
                .init(&device)
                .is_err()
        );
        let bn = BatchNorm2dConfig::new(2).init(&device).unwrap();
        let err = bn
            .try_forward(Tensor::zeros([1, 3, 2, 2], &device))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape mismatch for batch norm input: expected [1, 2, 2, 2], got [1, 3, 2, 2]"
        );
        assert!(
            bn.try_forward(Tensor::zeros([1, 2, 1, 1], &device))
                .is_err()
        );
    }
}
