//! A network's configuration chosen by name at run time: what a checkpoint's `model` and
//! `model_config` fields, or a training configuration file, describe.

use dl_core::Result;

use crate::{
    CnnConfig, LstmClassifierConfig, LstmForecasterConfig, MlpConfig, ModelKind, ScratchMlpConfig,
    TransformerClassifierConfig,
};

/// The configuration of one [`ModelKind`], parsed from JSON into that network's `XConfig`.
///
/// `cnn` and `image-cnn` share [`CnnConfig`]. Parsing goes through each config's serde
/// definition (fields with a default may be left out), and a missing or mistyped field is an
/// error that names the model.
///
/// ```
/// use dl_models::{ModelConfig, ModelKind};
///
/// use dl_models::LstmClassifierConfig;
///
/// let json = serde_json::to_value(LstmClassifierConfig::new().with_input_size(28))?;
/// let config = ModelConfig::from_json(ModelKind::Lstm, &json)?;
/// let ModelConfig::Lstm(lstm) = &config else { unreachable!() };
/// assert_eq!((lstm.input_size, lstm.hidden_size), (28, 64));
/// assert_eq!(config.num_params()?, lstm.num_params()?);
///
/// let err = ModelConfig::from_json(ModelKind::Cnn, &serde_json::json!([1, 2])).unwrap_err();
/// assert!(err.to_string().contains("the `cnn` model configuration is not valid"), "{err}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub enum ModelConfig {
    /// `mlp`.
    Mlp(MlpConfig),
    /// `cnn` and `image-cnn`.
    Cnn(CnnConfig),
    /// `lstm`.
    Lstm(LstmClassifierConfig),
    /// `transformer`.
    Transformer(TransformerClassifierConfig),
    /// `scratch`.
    Scratch(ScratchMlpConfig),
    /// `forecast`.
    Forecast(LstmForecasterConfig),
}

/// A JSON configuration that does not describe the named model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the `{model}` model configuration is not valid: {reason}")]
pub struct InvalidModelConfig {
    /// The model it was read as.
    pub model: ModelKind,
    /// What serde found wrong (a missing or mistyped field, an unknown variant).
    pub reason: String,
}

impl ModelConfig {
    /// Parse `config` as the configuration of `kind`.
    pub fn from_json(
        kind: ModelKind,
        config: &serde_json::Value,
    ) -> std::result::Result<Self, InvalidModelConfig> {
        fn parse<T: serde::de::DeserializeOwned>(
            kind: ModelKind,
            config: &serde_json::Value,
        ) -> std::result::Result<T, InvalidModelConfig> {
            T::deserialize(config).map_err(|e| InvalidModelConfig {
                model: kind,
                reason: e.to_string(),
            })
        }
        Ok(match kind {
            ModelKind::Mlp => Self::Mlp(parse(kind, config)?),
            ModelKind::Cnn | ModelKind::ImageCnn => Self::Cnn(parse(kind, config)?),
            ModelKind::Lstm => Self::Lstm(parse(kind, config)?),
            ModelKind::Transformer => Self::Transformer(parse(kind, config)?),
            ModelKind::Scratch => Self::Scratch(parse(kind, config)?),
            ModelKind::Forecast => Self::Forecast(parse(kind, config)?),
        })
    }

    /// Parameters the configuration describes, counted without allocating (an error when
    /// the count overflows or a size is zero).
    pub fn num_params(&self) -> Result<usize> {
        match self {
            Self::Mlp(c) => c.num_params(),
            Self::Cnn(c) => c.num_params(),
            Self::Lstm(c) => c.num_params(),
            Self::Transformer(c) => c.num_params(),
            Self::Scratch(c) => c.num_params(),
            Self::Forecast(c) => c.num_params(),
        }
    }
}
