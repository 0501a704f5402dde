//! The chapter's `RecurrentNeuralNetwork` / `LongShortTermMemory`: a multi-layer LSTM whose
//! last time step feeds a linear classifier.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use dl_core::{Classifier, Result, validate};
use dl_layers::{KeyLayout, Lstm, LstmConfig, PytorchModel, linear_forward};

use crate::mlp::ParamCount;

/// Configuration of [`LstmClassifier`]; the defaults are the chapter's sequence-prediction
/// case (input 10, hidden 64, 2 layers, 5 classes, dropout 0.2 between layers).
///
/// ```
/// let config = dl_models::LstmClassifierConfig::new();
/// assert_eq!((config.input_size, config.hidden_size, config.num_layers), (10, 64, 2));
/// ```
#[derive(Config, Debug, PartialEq)]
pub struct LstmClassifierConfig {
    /// Features per time step.
    #[config(default = 10)]
    pub input_size: usize,
    /// LSTM hidden size.
    #[config(default = 64)]
    pub hidden_size: usize,
    /// Stacked LSTM layers.
    #[config(default = 2)]
    pub num_layers: usize,
    /// Number of classes.
    #[config(default = 5)]
    pub num_classes: usize,
    /// Dropout between LSTM layers, as `nn.LSTM(dropout=...)` (training only).
    #[config(default = 0.2)]
    pub dropout: f64,
}

impl LstmClassifierConfig {
    /// Number of parameters [`LstmClassifierConfig::init`] would allocate, computed without
    /// allocating; an error when it overflows `usize`.
    ///
    /// ```
    /// // 2 layers: 4*64*(10+64) + 8*64, then 4*64*(64+64) + 8*64; fc 64*5 + 5.
    /// assert_eq!(dl_models::LstmClassifierConfig::new().num_params()?, 53_061);
    /// # Ok::<(), dl_core::Error>(())
    /// ```
    pub fn num_params(&self) -> Result<usize> {
        let h = self.hidden_size;
        let mut total = ParamCount::new("LSTM classifier");
        total.lstm(self.input_size, h, self.num_layers);
        total.linear(h, self.num_classes);
        total.finish()
    }

    /// Build the network with PyTorch's initialisation (`U(-1/sqrt(h), 1/sqrt(h))` for the
    /// LSTM, kaiming-uniform for the classifier).
    pub fn init(&self, device: &Device) -> Result<LstmClassifier> {
        validate::probability("LSTM classifier dropout", self.dropout)?;
        validate::positive("LSTM classifier num_classes", self.num_classes)?;
        let lstm = LstmConfig::new(self.input_size, self.hidden_size)
            .with_num_layers(self.num_layers)
            .with_batch_first(true)
            .with_dropout(self.dropout)
            .init(device)?;
        Ok(LstmClassifier {
            lstm,
            fc: LinearConfig::new(self.hidden_size, self.num_classes).init(device),
        })
    }
}

/// `lstm` (batch first, zero initial state) then `fc` on the last time step's output.
///
/// PyTorch keys: `lstm.weight_ih_l{k}` `[4h, in]`, `lstm.weight_hh_l{k}` `[4h, h]`,
/// `lstm.bias_ih_l{k}`, `lstm.bias_hh_l{k}` (gates packed in PyTorch's order i, f, g, o) and
/// `fc.weight` `[classes, h]`, `fc.bias`.
///
/// ```
/// use burn::tensor::Tensor;
/// let device = dl_core::BackendKind::Flex.device().unwrap();
/// let model = dl_models::LstmClassifierConfig::new().init(&device).unwrap();
/// let logits = model.forward(Tensor::zeros([3, 20, 10], &device));
/// assert_eq!(logits.dims(), [3, 5]);
/// ```
#[derive(Module, Debug)]
pub struct LstmClassifier {
    /// The recurrent layers.
    pub lstm: Lstm,
    /// The classifier on the last hidden state.
    pub fc: Linear,
}

impl LstmClassifier {
    /// Logits `[batch, classes]` for sequences `[batch, time, features]`.
    ///
    /// Panics with a message naming the expected shape when the input does not fit; use
    /// [`LstmClassifier::try_forward`] on user data.
    pub fn forward(&self, sequences: Tensor<3>) -> Tensor<2> {
        let (output, _) = self.lstm.forward(sequences, None);
        self.classify(output)
    }

    /// [`LstmClassifier::forward`] that returns an error for a wrong input shape.
    pub fn try_forward(&self, sequences: Tensor<3>) -> Result<Tensor<2>> {
        let (output, _) = self.lstm.try_forward(sequences, None)?;
        Ok(self.classify(output))
    }

    fn classify(&self, output: Tensor<3>) -> Tensor<2> {
        let [batch, time, hidden] = output.dims();
        let last = output.narrow(1, time - 1, 1).reshape([batch, hidden]);
        linear_forward(&self.fc, last)
    }
}

impl Classifier for LstmClassifier {
    type Input = Tensor<3>;

    fn logits(&self, input: Tensor<3>) -> Tensor<2> {
        self.forward(input)
    }

    fn num_classes(&self) -> usize {
        self.fc.weight.dims()[1]
    }
}

impl PytorchModel for LstmClassifier {
    /// The chapter's `LongShortTermMemory` names, `nn.LSTM`'s `_l{k}` suffixes coming from
    /// dl-layers' `PytorchPath`.
    fn key_layouts() -> &'static [KeyLayout] {
        &[KeyLayout {
            name: "nn.LSTM",
            map: KeyLayout::IDENTITY.map,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dl_core::BackendKind;

    #[test]
    fn parameter_counts_match_pytorch() {
        let device = BackendKind::Flex.device().unwrap();
        // PyTorch: LongShortTermMemory(10, 64, 2, 5) has 53_061 parameters and
        // LongShortTermMemory(28, 128, 2, 10) 214_282 (fixtures/models.safetensors metadata).
        let model = LstmClassifierConfig::new().init(&device).unwrap();
        assert_eq!(model.parameter_count(), 53_061);
        let rows = LstmClassifierConfig::new()
            .with_input_size(28)
            .with_hidden_size(128)
            .with_num_classes(10)
            .init(&device)
            .unwrap();
        assert_eq!(rows.parameter_count(), 214_282);
        let three = LstmClassifierConfig::new().with_num_layers(3);
        assert_eq!(
            three.num_params().unwrap(),
            three.init(&device).unwrap().parameter_count()
        );
        let huge = LstmClassifierConfig::new().with_hidden_size(1 << 40);
        assert!(huge.num_params().is_err());
    }

    #[test]
    fn wrong_feature_count_is_an_error() {
        let device = BackendKind::Flex.device().unwrap();
        let model = LstmClassifierConfig::new().init(&device).unwrap();
        let err = model
            .try_forward(Tensor::zeros([2, 5, 9], &device))
            .unwrap_err();
        assert!(err.to_string().contains("lstm input"), "{err}");
    }
}
