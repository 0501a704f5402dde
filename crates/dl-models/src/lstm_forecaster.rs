//! The sequence-prediction case: a multi-layer LSTM reads the past weeks of a series and a
//! linear head on its last time step predicts the next `horizon` values (regression).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use dl_core::{Result, validate};
use dl_layers::{KeyLayout, Lstm, LstmConfig, PytorchModel, linear_forward};

use crate::mlp::ParamCount;

/// Configuration of [`LstmForecaster`]: one value per time step, hidden 32, 1 layer, one step
/// ahead, no dropout.
///
/// ```
/// let config = dl_models::LstmForecasterConfig::new();
/// assert_eq!((config.input_size, config.hidden_size, config.horizon), (1, 32, 1));
/// ```
#[derive(Config, Debug, PartialEq)]
pub struct LstmForecasterConfig {
    /// Features per time step (1 for a univariate series).
    #[config(default = 1)]
    pub input_size: usize,
    /// LSTM hidden size.
    #[config(default = 32)]
    pub hidden_size: usize,
    /// Stacked LSTM layers.
    #[config(default = 1)]
    pub num_layers: usize,
    /// Values predicted per sequence (the steps after its last one).
    #[config(default = 1)]
    pub horizon: usize,
    /// Dropout between LSTM layers, as `nn.LSTM(dropout=...)` (training only).
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl LstmForecasterConfig {
    /// Number of parameters [`LstmForecasterConfig::init`] would allocate, computed without
    /// allocating; an error when it overflows `usize`.
    ///
    /// ```
    /// // 4*32*(1+32) + 8*32 for the LSTM, 32*1 + 1 for the head.
    /// assert_eq!(dl_models::LstmForecasterConfig::new().num_params()?, 4_513);
    /// # Ok::<(), dl_core::Error>(())
    /// ```
    pub fn num_params(&self) -> Result<usize> {
        let h = self.hidden_size;
        let mut total = ParamCount::new("LSTM forecaster");
        total.lstm(self.input_size, h, self.num_layers);
        total.linear(h, self.horizon);
        total.finish()
    }

    /// Build the network with PyTorch's initialisation (`U(-1/sqrt(h), 1/sqrt(h))` for the
    /// LSTM, kaiming-uniform for the head).
    pub fn init(&self, device: &Device) -> Result<LstmForecaster> {
        validate::probability("LSTM forecaster dropout", self.dropout)?;
        validate::positive("LSTM forecaster horizon", self.horizon)?;
        let lstm = LstmConfig::new(self.input_size, self.hidden_size)
            .with_num_layers(self.num_layers)
            .with_batch_first(true)
            .with_dropout(self.dropout)
            .init(device)?;
        Ok(LstmForecaster {
            lstm,
            head: LinearConfig::new(self.hidden_size, self.horizon).init(device),
        })
    }
}

/// `lstm` (batch first, zero initial state) then `head` on the last time step's output: the
/// PyTorch module
///
/// ```python
/// class LstmForecaster(nn.Module):
///     def __init__(self, input_size=1, hidden_size=32, num_layers=1, horizon=1, dropout=0.0):
///         super().__init__()
///         self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True, dropout=dropout)
///         self.head = nn.Linear(hidden_size, horizon)
///     def forward(self, x):
///         out, _ = self.lstm(x)
///         return self.head(out[:, -1, :])
/// ```
///
/// PyTorch keys: `lstm.weight_ih_l{k}` `[4h, in]`, `lstm.weight_hh_l{k}` `[4h, h]`,
/// `lstm.bias_ih_l{k}`, `lstm.bias_hh_l{k}` (gates in PyTorch's order i, f, g, o) and
/// `head.weight` `[horizon, h]`, `head.bias`.
///
/// ```
/// use burn::tensor::Tensor;
/// let device = dl_core::BackendKind::Flex.device().unwrap();
/// let model = dl_models::LstmForecasterConfig::new().init(&device).unwrap();
/// let next = model.forward(Tensor::zeros([3, 52, 1], &device));
/// assert_eq!(next.dims(), [3, 1]);
/// ```
#[derive(Module, Debug)]
pub struct LstmForecaster {
    /// The recurrent layers.
    pub lstm: Lstm,
    /// The regression head on the last hidden state.
    pub head: Linear,
}

impl LstmForecaster {
    /// Predictions `[batch, horizon]` for sequences `[batch, time, features]`.
    ///
    /// Panics with a message naming the expected shape when the input does not fit; use
    /// [`LstmForecaster::try_forward`] on user data.
    pub fn forward(&self, sequences: Tensor<3>) -> Tensor<2> {
        let (output, _) = self.lstm.forward(sequences, None);
        self.predict(output)
    }

    /// [`LstmForecaster::forward`] that returns an error for a wrong input shape.
    pub fn try_forward(&self, sequences: Tensor<3>) -> Result<Tensor<2>> {
        let (output, _) = self.lstm.try_forward(sequences, None)?;
        Ok(self.predict(output))
    }

    /// Values predicted per sequence.
    pub fn horizon(&self) -> usize {
        self.head.weight.dims()[1]
    }

    /// Number of parameters.
    pub fn parameter_count(&self) -> usize {
        self.num_params()
    }

    fn predict(&self, output: Tensor<3>) -> Tensor<2> {
        let [batch, time, hidden] = output.dims();
        let last = output.narrow(1, time - 1, 1).reshape([batch, hidden]);
        linear_forward(&self.head, last)
    }
}

impl PytorchModel for LstmForecaster {
    /// The sequence case's module names, `nn.LSTM`'s `_l{k}` suffixes coming from dl-layers'
    /// `PytorchPath`.
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
    fn parameter_counts_match_the_configuration() {
        let device = BackendKind::Flex.device().unwrap();
        for config in [
            LstmForecasterConfig::new(),
            LstmForecasterConfig::new()
                .with_num_layers(2)
                .with_hidden_size(8)
                .with_horizon(3),
        ] {
            let model = config.init(&device).unwrap();
            assert_eq!(config.num_params().unwrap(), model.parameter_count());
        }
        // PyTorch: sum(p.numel() for p in LstmForecaster(1, 32, 1, 1).parameters()) == 4513.
        assert_eq!(LstmForecasterConfig::new().num_params().unwrap(), 4_513);
        assert!(
            LstmForecasterConfig::new()
                .with_hidden_size(1 << 40)
                .num_params()
                .is_err()
        );
    }

    #[test]
    fn wrong_inputs_and_settings_are_errors() {
        let device = BackendKind::Flex.device().unwrap();
        let model = LstmForecasterConfig::new().init(&device).unwrap();
        let err = model
            .try_forward(Tensor::zeros([2, 5, 3], &device))
            .unwrap_err();
        assert!(err.to_string().contains("lstm input"), "{err}");
        assert!(
            LstmForecasterConfig::new()
                .with_horizon(0)
                .init(&device)
                .is_err()
        );
    }
}
