//! The models the parity checks cover, and how each is built from its fixture configuration.

use std::fmt;
use std::str::FromStr;

use dl_core::{Error, Result};
use dl_models::{
    CnnConfig, LstmClassifierConfig, MlpConfig, ScratchMlpConfig, TransformerClassifierConfig,
};
use serde_json::Value;

/// A model of the parity table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParityModel {
    /// `Mlp`, the training pipeline's `nn.Sequential`.
    Mlp,
    /// `Cnn`, the chapter's `ConvolutionalNeuralNetwork`.
    Cnn,
    /// `ImageCnn`, the image-classification case's `nn.Sequential`.
    ImageCnn,
    /// `LstmClassifier`, the chapter's `LongShortTermMemory`.
    Lstm,
    /// `TransformerClassifier`, the chapter's `Transformer`.
    Transformer,
    /// `ScratchMlp` against the chapter's NumPy `DeepNeuralNetwork`.
    Scratch,
}

impl ParityModel {
    /// Every model, in table order.
    pub const ALL: [ParityModel; 6] = [
        ParityModel::Mlp,
        ParityModel::Cnn,
        ParityModel::ImageCnn,
        ParityModel::Lstm,
        ParityModel::Transformer,
        ParityModel::Scratch,
    ];

    /// The fixture's case name, also used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ParityModel::Mlp => "mlp",
            ParityModel::Cnn => "cnn",
            ParityModel::ImageCnn => "image_cnn",
            ParityModel::Lstm => "lstm",
            ParityModel::Transformer => "transformer",
            ParityModel::Scratch => "scratch",
        }
    }

    /// Parse a comma-separated list; `all` means every model.
    ///
    /// ```
    /// use dl_parity::ParityModel;
    /// assert_eq!(ParityModel::parse_list("mlp,lstm").unwrap(), vec![ParityModel::Mlp, ParityModel::Lstm]);
    /// assert!(ParityModel::parse_list("resnet").is_err());
    /// ```
    pub fn parse_list(list: &str) -> Result<Vec<ParityModel>> {
        if list.trim() == "all" {
            return Ok(Self::ALL.to_vec());
        }
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect()
    }
}

impl fmt::Display for ParityModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ParityModel {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let name = s.trim().to_ascii_lowercase().replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                Error::invalid(
                    "model",
                    format!("one of {}", Self::ALL.map(|m| m.name()).join(", ")),
                    s,
                )
            })
    }
}

fn usize_of(config: &Value, key: &str) -> Result<usize> {
    config[key].as_u64().map(|v| v as usize).ok_or_else(|| {
        Error::invalid(
            format!("fixture config `{key}`"),
            "an integer",
            &config[key],
        )
    })
}

fn sizes_of(config: &Value, key: &str) -> Result<Vec<usize>> {
    config[key]
        .as_array()
        .ok_or_else(|| Error::invalid(format!("fixture config `{key}`"), "a list", &config[key]))?
        .iter()
        .map(|v| {
            v.as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| Error::invalid(format!("fixture config `{key}`"), "integers", v))
        })
        .collect()
}

pub(crate) fn mlp_config(config: &Value, dropout: f64) -> Result<MlpConfig> {
    Ok(MlpConfig::new()
        .with_input_size(usize_of(config, "input_size")?)
        .with_hidden_sizes(sizes_of(config, "hidden_sizes")?)
        .with_num_classes(usize_of(config, "num_classes")?)
        .with_dropout(dropout))
}

pub(crate) fn cnn_config(config: &Value, dropout: f64) -> Result<CnnConfig> {
    let channels = sizes_of(config, "conv_channels")?;
    let [c1, c2, c3] = channels[..] else {
        return Err(Error::invalid(
            "fixture conv_channels",
            "three sizes",
            format!("{channels:?}"),
        ));
    };
    Ok(CnnConfig::new()
        .with_in_channels(usize_of(config, "in_channels")?)
        .with_image_size(usize_of(config, "image_size")?)
        .with_conv_channels([c1, c2, c3])
        .with_hidden_size(usize_of(config, "hidden_size")?)
        .with_num_classes(usize_of(config, "num_classes")?)
        .with_dropout(dropout))
}

pub(crate) fn lstm_config(config: &Value, dropout: f64) -> Result<LstmClassifierConfig> {
    Ok(LstmClassifierConfig::new()
        .with_input_size(usize_of(config, "input_size")?)
        .with_hidden_size(usize_of(config, "hidden_size")?)
        .with_num_layers(usize_of(config, "num_layers")?)
        .with_num_classes(usize_of(config, "num_classes")?)
        .with_dropout(dropout))
}

pub(crate) fn transformer_config(
    config: &Value,
    dropout: f64,
) -> Result<TransformerClassifierConfig> {
    Ok(TransformerClassifierConfig::new()
        .with_vocab_size(usize_of(config, "vocab_size")?)
        .with_d_model(usize_of(config, "d_model")?)
        .with_n_heads(usize_of(config, "n_heads")?)
        .with_n_layers(usize_of(config, "n_layers")?)
        .with_d_ff(usize_of(config, "d_ff")?)
        .with_max_seq_length(usize_of(config, "max_seq_length")?)
        .with_num_classes(usize_of(config, "num_classes")?)
        .with_dropout(dropout))
}

pub(crate) fn scratch_config(config: &Value) -> Result<ScratchMlpConfig> {
    let activation = config["activation"]
        .as_str()
        .ok_or_else(|| Error::invalid("fixture activation", "a name", &config["activation"]))?
        .parse()?;
    Ok(ScratchMlpConfig::new(sizes_of(config, "layer_sizes")?).with_activation(activation))
}
