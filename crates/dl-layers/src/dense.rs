//! A fully connected layer followed by an activation.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use dl_core::{Result, validate};

use crate::activation::Activation;
use crate::linear::linear_forward;

/// Configuration of a [`Dense`] layer.
#[derive(Config, Debug)]
pub struct DenseConfig {
    /// Number of input features.
    pub d_input: usize,
    /// Number of output features.
    pub d_output: usize,
    /// Whether the linear map has a bias (PyTorch's default: yes).
    #[config(default = true)]
    pub bias: bool,
    /// The activation after the linear map (the chapter's default: ReLU).
    #[config(default = "Activation::Relu")]
    pub activation: Activation,
}

/// `activation(x Wᵀ + b)`: `nn.Linear(d_input, d_output, bias)` followed by an activation.
///
/// # PyTorch keys
///
/// | key | PyTorch shape | here |
/// |---|---|---|
/// | `linear.weight` | `[d_output, d_input]` | `linear.weight`, stored **transposed** `[d_input, d_output]` (Burn's `Linear`) |
/// | `linear.bias` | `[d_output]` | `linear.bias` (absent when `bias` is false) |
///
/// # Initialisation
///
/// PyTorch's `nn.Linear` default, `kaiming_uniform_(a=√5)`: weight and bias from
/// `U(−1/√d_input, 1/√d_input)` (Burn's default `Linear` initialiser is the same).
///
/// ```
/// use burn::tensor::Tensor;
/// use dl_layers::{Activation, DenseConfig};
///
/// let device = dl_core::BackendKind::Flex.device()?;
/// let dense = DenseConfig::new(3, 2).with_activation(Activation::Sigmoid).init(&device)?;
/// let y = dense.forward(Tensor::<3>::zeros([4, 5, 3], &device));
/// assert_eq!(y.dims(), [4, 5, 2]);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Module, Debug)]
pub struct Dense {
    /// The linear map; Burn stores its weight as `[d_input, d_output]`.
    pub linear: Linear,
    /// The activation applied to the linear map's output.
    #[module(skip)]
    pub activation: Activation,
}

impl DenseConfig {
    /// Build the layer with PyTorch's initialisation.
    ///
    /// Fails when `d_input` or `d_output` is 0.
    pub fn init(&self, device: &Device) -> Result<Dense> {
        validate::positive("dense d_input", self.d_input)?;
        validate::positive("dense d_output", self.d_output)?;
        let linear = LinearConfig::new(self.d_input, self.d_output)
            .with_bias(self.bias)
            .init(device);
        Ok(Dense {
            linear,
            activation: self.activation,
        })
    }
}

impl Dense {
    /// Number of input features.
    pub fn d_input(&self) -> usize {
        self.linear.weight.shape().dims::<2>()[0]
    }

    /// Number of output features.
    pub fn d_output(&self) -> usize {
        self.linear.weight.shape().dims::<2>()[1]
    }

    /// `[..., d_input]` → `[..., d_output]`.
    ///
    /// # Panics
    ///
    /// When the last axis of `x` is not `d_input` (see [`Dense::try_forward`]).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        validate::or_panic(self.try_forward(x))
    }

    /// [`Dense::forward`], returning an error naming the expected shape when the last axis of
    /// `x` is not `d_input`.
    pub fn try_forward<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>> {
        validate::last_dim("dense input", &x.dims(), self.d_input())?;
        Ok(self.activation.forward(linear_forward(&self.linear, x)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_util::{assert_uniform, values};
    use dl_core::BackendKind;

    #[test]
    fn init_follows_pytorch_kaiming_uniform() {
        let device = BackendKind::Flex.device().unwrap();
        dl_core::seed_device(&device, 1);
        let dense = DenseConfig::new(50, 400).init(&device).unwrap();
        let bound = 1.0 / 50f64.sqrt();
        assert_uniform(&values(dense.linear.weight.val()), bound, "dense weight");
        let bias = values(dense.linear.bias.as_ref().unwrap().val());
        // 400 draws: check range only (too few for the moment checks).
        assert!(bias.iter().all(|b| b.abs() <= bound));
        assert!(bias.iter().any(|b| b.abs() > 0.9 * bound));
        assert_eq!(dense.num_params(), 50 * 400 + 400);
    }

    #[test]
    fn shapes_and_no_bias() {
        let device = BackendKind::Flex.device().unwrap();
        let dense = DenseConfig::new(3, 2)
            .with_bias(false)
            .init(&device)
            .unwrap();
        assert!(dense.linear.bias.is_none());
        assert_eq!((dense.d_input(), dense.d_output()), (3, 2));
        assert_eq!(
            dense.forward(Tensor::<2>::zeros([5, 3], &device)).dims(),
            [5, 2]
        );
        assert_eq!(dense.num_params(), 6);
    }

    #[test]
    fn forward_by_hand() {
        // y = relu(x Wᵀ + b) with W = [[1, -1]] (PyTorch layout [1, 2]), b = [0.5]:
        // x = [2, 3] → relu(2 - 3 + 0.5) = 0; x = [3, 1] → relu(3 - 1 + 0.5) = 2.5.
        let device = BackendKind::Flex.device().unwrap();
        let mut dense = DenseConfig::new(2, 1).init(&device).unwrap();
        dense.linear.weight =
            burn::module::Param::from_tensor(Tensor::from_floats([[1.0], [-1.0]], &device));
        dense.linear.bias = Some(burn::module::Param::from_tensor(Tensor::from_floats(
            [0.5],
            &device,
        )));
        let y = dense.forward(Tensor::<2>::from_floats([[2.0, 3.0], [3.0, 1.0]], &device));
        assert_eq!(y.into_data().try_to_vec::<f32>().unwrap(), vec![0.0, 2.5]);
    }

    #[test]
    fn config_and_input_errors() {
        let device = BackendKind::Flex.device().unwrap();
        let err = DenseConfig::new(0, 2).init(&device).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid dense d_input: expected at least 1, got 0"
        );
        let dense = DenseConfig::new(3, 2).init(&device).unwrap();
        let err = dense
            .try_forward(Tensor::<2>::zeros([4, 5], &device))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape mismatch for dense input: expected [4, 3], got [4, 5]"
        );
    }

    #[test]
    #[should_panic(expected = "shape mismatch for dense input")]
    fn forward_panics_with_the_checked_message() {
        let device = BackendKind::Flex.device().unwrap();
        let dense = DenseConfig::new(3, 2).init(&device).unwrap();
        let _ = dense.forward(Tensor::<2>::zeros([4, 5], &device));
    }

    #[test]
    fn config_round_trips_through_json() {
        let config = DenseConfig::new(3, 2).with_activation(Activation::Gelu);
        let json = serde_json::to_string(&config).unwrap();
        assert!(json.contains("\"gelu\""), "{json}");
        let back: DenseConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back.activation, Activation::Gelu);
        assert_eq!((back.d_input, back.d_output, back.bias), (3, 2, true));
    }
}
