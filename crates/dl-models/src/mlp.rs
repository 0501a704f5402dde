//! The training pipeline's network: 784-512-256-10, ReLU, dropout 0.2.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use dl_core::{Classifier, Error, Result};

/// Configuration of [`Mlp`], with the chapter's training-pipeline values as defaults.
///
/// ```
/// let config = dl_models::MlpConfig::new();
/// assert_eq!(config.input_size, 784);
/// assert_eq!(config.hidden_sizes, vec![512, 256]);
/// ```
#[derive(Config, Debug, PartialEq)]
pub struct MlpConfig {
    /// Features per sample (28x28 pixels flattened).
    #[config(default = 784)]
    pub input_size: usize,
    /// Width of each hidden layer, in order.
    #[config(default = "vec![512, 256]")]
    pub hidden_sizes: Vec<usize>,
    /// Number of classes.
    #[config(default = 10)]
    pub num_classes: usize,
    /// Dropout probability after each hidden ReLU (active only on an autodiff device).
    #[config(default = 0.2)]
    pub dropout: f64,
}

/// A multi-layer perceptron: `Linear -> ReLU -> Dropout` per hidden layer, then a linear
/// classifier. It is the chapter's `nn.Sequential` of the training pipeline.
///
/// PyTorch state-dict keys of the chapter's `nn.Sequential`: `0.weight` `[512, 784]`,
/// `0.bias`, `3.weight` `[256, 512]`, `3.bias`, `6.weight` `[10, 256]`, `6.bias`. Here the
/// linear layers are `layers.0`, `layers.1`, `layers.2`; Burn stores linear weights as
/// `[in, out]` (the transpose of PyTorch's), which dl-io's loader handles.
///
/// ```
/// use burn::module::Module;
/// use burn::tensor::Tensor;
/// let device = dl_core::BackendKind::Flex.device().unwrap();
/// let mlp = dl_models::MlpConfig::new().init(&device).unwrap();
/// let logits = mlp.forward(Tensor::zeros([2, 784], &device));
/// assert_eq!(logits.dims(), [2, 10]);
/// assert_eq!(mlp.num_params(), 784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10);
/// ```
#[derive(Module, Debug)]
pub struct Mlp {
    /// The linear layers, hidden ones first.
    pub layers: Vec<Linear>,
    /// Dropout after each hidden activation.
    pub dropout: Dropout,
}

impl MlpConfig {
    /// Build the network with PyTorch's default initialisation (kaiming-uniform weights).
    pub fn init(&self, device: &Device) -> Result<Mlp> {
        check_dropout(self.dropout)?;
        check_positive("MLP input_size", self.input_size)?;
        check_positive("MLP num_classes", self.num_classes)?;
        let mut sizes = vec![self.input_size];
        for &h in &self.hidden_sizes {
            check_positive("MLP hidden size", h)?;
            sizes.push(h);
        }
        sizes.push(self.num_classes);
        let layers = sizes
            .windows(2)
            .map(|w| LinearConfig::new(w[0], w[1]).init(device))
            .collect();
        Ok(Mlp {
            layers,
            dropout: DropoutConfig::new(self.dropout).init(),
        })
    }
}

impl Mlp {
    /// Logits `[batch, num_classes]` for inputs `[batch, input_size]`.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        let mut x = input;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = self.dropout.forward(relu(x));
            }
        }
        x
    }
}

impl Classifier for Mlp {
    type Input = Tensor<2>;

    fn logits(&self, input: Tensor<2>) -> Tensor<2> {
        self.forward(input)
    }

    fn num_classes(&self) -> usize {
        self.layers.last().map_or(0, |l| l.weight.dims()[1])
    }
}

/// Dropout must be a probability in `[0, 1)`, as Burn's `DropoutConfig::init` asserts.
pub(crate) fn check_dropout(p: f64) -> Result<()> {
    if p.is_finite() && (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::invalid(
            "dropout probability",
            "a value in [0, 1)",
            p,
        ))
    }
}

pub(crate) fn check_positive(what: &str, value: usize) -> Result<()> {
    if value == 0 {
        Err(Error::invalid(what, "a positive size", value))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dl_core::BackendKind;

    #[test]
    fn chapter_sizes_and_parameter_count() {
        let device = BackendKind::Flex.device().expect("flex");
        let mlp = MlpConfig::new().init(&device).expect("valid config");
        // torch: sum(p.numel() for p in model.parameters()) == 535818
        assert_eq!(mlp.parameter_count(), 535_818);
        assert_eq!(mlp.num_classes(), 10);
        assert_eq!(mlp.layers.len(), 3);
    }

    #[test]
    fn invalid_configs_are_errors() {
        let device = BackendKind::Flex.device().expect("flex");
        let err = MlpConfig::new()
            .with_dropout(1.0)
            .init(&device)
            .unwrap_err();
        assert!(err.to_string().contains("dropout probability"), "{err}");
        let err = MlpConfig::new()
            .with_hidden_sizes(vec![0])
            .init(&device)
            .unwrap_err();
        assert!(err.to_string().contains("hidden size"), "{err}");
    }

    #[test]
    fn no_hidden_layer_is_logistic_regression() {
        let device = BackendKind::Flex.device().expect("flex");
        let mlp = MlpConfig::new()
            .with_hidden_sizes(vec![])
            .init(&device)
            .expect("valid");
        assert_eq!(mlp.num_params(), 784 * 10 + 10);
        assert_eq!(mlp.forward(Tensor::ones([3, 784], &device)).dims(), [3, 10]);
    }
}
