//! The training pipeline's network: 784-512-256-10, ReLU, dropout 0.2.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use dl_core::{Classifier, Error, Result, validate};
use dl_layers::{KeyLayout, PytorchModel, dropout_forward, linear_forward};

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
        validate::probability("MLP dropout", self.dropout)?;
        validate::positive("MLP input_size", self.input_size)?;
        validate::positive("MLP num_classes", self.num_classes)?;
        let mut sizes = vec![self.input_size];
        for &h in &self.hidden_sizes {
            validate::positive("MLP hidden size", h)?;
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

    /// Number of parameters [`MlpConfig::init`] would allocate, computed without allocating;
    /// an error when it overflows `usize`.
    ///
    /// ```
    /// assert_eq!(dl_models::MlpConfig::new().num_params()?, 535_818);
    /// # Ok::<(), dl_core::Error>(())
    /// ```
    pub fn num_params(&self) -> Result<usize> {
        let mut sizes = vec![self.input_size];
        sizes.extend(&self.hidden_sizes);
        sizes.push(self.num_classes);
        let mut total = ParamCount::new("MLP");
        for w in sizes.windows(2) {
            total.linear(w[0], w[1]);
        }
        total.finish()
    }
}

impl Mlp {
    /// Features per sample the first layer reads.
    pub fn input_size(&self) -> usize {
        self.layers.first().map_or(0, |l| l.weight.dims()[0])
    }

    /// Logits `[batch, num_classes]` for inputs `[batch, input_size]`.
    ///
    /// Panics with a message naming the expected shape when the input does not fit; use
    /// [`Mlp::try_forward`] on user data.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        match self.try_forward(input) {
            Ok(logits) => logits,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`Mlp::forward`] that returns an error for an input whose width is not the first
    /// layer's `input_size`.
    pub fn try_forward(&self, input: Tensor<2>) -> Result<Tensor<2>> {
        let dims = input.dims();
        let expected = self.input_size();
        if dims[1] != expected {
            return Err(Error::shape_mismatch(
                "MLP input",
                &[dims[0], expected],
                &dims,
            ));
        }
        Ok(self.run(input))
    }

    fn run(&self, input: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        let mut x = input;
        for (i, layer) in self.layers.iter().enumerate() {
            x = linear_forward(layer, x);
            if i < last {
                x = dropout_forward(&self.dropout, relu(x));
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

/// A parameter count summed with overflow checks, so that a configuration read from a file
/// (`hidden_size: 10^15`) is measured before anything is allocated.
pub(crate) struct ParamCount {
    model: &'static str,
    total: Option<usize>,
}

impl ParamCount {
    pub(crate) fn new(model: &'static str) -> Self {
        Self {
            model,
            total: Some(0),
        }
    }

    /// Adds the product of `dims`.
    pub(crate) fn add(&mut self, dims: &[usize]) {
        let product = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        self.total = self.total.zip(product).and_then(|(t, p)| t.checked_add(p));
    }

    /// A one-direction `nn.LSTM` stack: layer 0 reads the input, every later layer the
    /// previous hidden state; each has two weight matrices and two biases of four gates.
    pub(crate) fn lstm(&mut self, input: usize, hidden: usize, layers: usize) {
        if layers > 0 {
            self.add(&[4, hidden, input]);
            self.add(&[4, hidden, hidden]);
            self.add(&[8, hidden]);
            let later = layers - 1;
            self.add(&[later, 4, hidden, hidden.saturating_mul(2)]);
            self.add(&[later, 8, hidden]);
        }
    }

    /// A linear layer `fan_in -> fan_out` with bias.
    pub(crate) fn linear(&mut self, fan_in: usize, fan_out: usize) {
        self.add(&[fan_in, fan_out]);
        self.add(&[fan_out]);
    }

    pub(crate) fn finish(self) -> Result<usize> {
        self.total.ok_or_else(|| {
            Error::invalid(
                format!("{} configuration", self.model),
                "a parameter count that fits in usize",
                "an overflowing one",
            )
        })
    }
}

impl PytorchModel for Mlp {
    /// The training pipeline's `nn.Sequential` first (Linear, ReLU, Dropout per hidden layer),
    /// then the field names.
    fn key_layouts() -> &'static [KeyLayout] {
        &[
            KeyLayout {
                name: "nn.Sequential",
                map: mlp_sequential,
            },
            KeyLayout::IDENTITY,
        ]
    }
}

/// `layers.{i}.x` -> `{3 i}.x`: Linear, ReLU, Dropout per hidden layer in `nn.Sequential`.
fn mlp_sequential(path: &str) -> String {
    match path.strip_prefix("layers.") {
        Some(rest) => KeyLayout::rename_head(rest, |i| {
            i.parse::<usize>().ok().map(|i| (3 * i).to_string())
        }),
        None => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dl_core::BackendKind;

    #[test]
    fn sequential_names_step_by_three() {
        assert_eq!(mlp_sequential("layers.2.bias"), "6.bias");
        assert_eq!(mlp_sequential("dropout.x"), "dropout.x");
    }

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
    fn num_params_counts_without_allocating() {
        let device = BackendKind::Flex.device().expect("flex");
        let config = MlpConfig::new()
            .with_input_size(7)
            .with_hidden_sizes(vec![5, 3])
            .with_num_classes(2);
        // 7*5+5 + 5*3+3 + 3*2+2 = 66
        assert_eq!(config.num_params().expect("fits"), 66);
        assert_eq!(config.init(&device).expect("valid").num_params(), 66);
        let huge = MlpConfig::new().with_hidden_sizes(vec![usize::MAX / 2, usize::MAX / 2]);
        let err = huge.num_params().unwrap_err();
        assert!(err.to_string().contains("MLP configuration"), "{err}");
    }

    #[test]
    fn try_forward_names_the_expected_width() {
        let device = BackendKind::Flex.device().expect("flex");
        let mlp = MlpConfig::new()
            .with_hidden_sizes(vec![4])
            .init(&device)
            .expect("valid");
        let err = mlp
            .try_forward(Tensor::zeros([2, 783], &device))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape mismatch for MLP input: expected [2, 784], got [2, 783]"
        );
        assert_eq!(
            mlp.try_forward(Tensor::zeros([2, 784], &device))
                .expect("fits")
                .dims(),
            [2, 10]
        );
    }

    #[test]
    fn invalid_configs_are_errors() {
        let device = BackendKind::Flex.device().expect("flex");
        let err = MlpConfig::new()
            .with_dropout(1.0)
            .init(&device)
            .unwrap_err();
        assert!(err.to_string().contains("MLP dropout"), "{err}");
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
        // One linear map: for an all-ones image, logit j is Σ_i W[i][j] + b[j] (Burn stores
        // W as [in, out]), summed here in f64 from the parameters.
        let layer = &mlp.layers[0];
        let w: Vec<f64> = layer.weight.val().into_data().iter::<f64>().collect();
        let b: Vec<f64> = match &layer.bias {
            Some(b) => b.val().into_data().iter::<f64>().collect(),
            None => panic!("the logistic regression has a bias"),
        };
        let expected: Vec<f64> = (0..10)
            .map(|j| (0..784).map(|i| w[i * 10 + j]).sum::<f64>() + b[j])
            .collect();
        let logits = mlp.forward(Tensor::ones([3, 784], &device));
        assert_eq!(logits.dims(), [3, 10]);
        let got: Vec<f64> = logits.into_data().iter::<f64>().collect();
        for (i, (g, e)) in got.iter().zip(expected.iter().cycle()).enumerate() {
            // f32 sums of 784 terms of size ≤ 1/28: rounding stays below 1e-5.
            assert!((g - e).abs() < 1e-5, "logit {i}: {g}, expected {e}");
        }
    }
}
