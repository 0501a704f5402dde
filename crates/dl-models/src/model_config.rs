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

    /// The configuration a PyTorch fixture case describes: the network's `XConfig::new()`
    /// defaults with every field the case sets (see [`dl_core::config_from_case`]; keys in
    /// `ignore` are bookkeeping, any other unknown key is an error naming it).
    ///
    /// ```
    /// use dl_models::{ModelConfig, ModelKind};
    ///
    /// let case = serde_json::json!({"model": "lstm", "input_size": 10, "dropout": 0.2});
    /// let config = ModelConfig::from_case(ModelKind::Lstm, &case, &["model"])?;
    /// let ModelConfig::Lstm(lstm) = &config else { unreachable!() };
    /// assert_eq!((lstm.input_size, lstm.hidden_size), (10, 64));
    /// assert_eq!(config.dropout(), 0.2);
    /// assert_eq!(config.with_dropout(0.0).dropout(), 0.0);
    ///
    /// let typo = serde_json::json!({"model": "lstm", "hiden_size": 8});
    /// let err = ModelConfig::from_case(ModelKind::Lstm, &typo, &["model"]).unwrap_err();
    /// assert!(err.to_string().contains("hiden_size"), "{err}");
    /// # Ok::<(), dl_core::Error>(())
    /// ```
    pub fn from_case(kind: ModelKind, case: &serde_json::Value, ignore: &[&str]) -> Result<Self> {
        use dl_core::config_from_case as merge;
        Ok(match kind {
            ModelKind::Mlp => Self::Mlp(merge(&MlpConfig::new(), case, ignore)?),
            ModelKind::Cnn | ModelKind::ImageCnn => {
                Self::Cnn(merge(&CnnConfig::new(), case, ignore)?)
            }
            ModelKind::Lstm => Self::Lstm(merge(&LstmClassifierConfig::new(), case, ignore)?),
            ModelKind::Transformer => {
                Self::Transformer(merge(&TransformerClassifierConfig::new(), case, ignore)?)
            }
            ModelKind::Scratch => {
                Self::Scratch(merge(&ScratchMlpConfig::new(Vec::new()), case, ignore)?)
            }
            ModelKind::Forecast => {
                Self::Forecast(merge(&LstmForecasterConfig::new(), case, ignore)?)
            }
        })
    }

    /// The dropout rate (0 for the from-scratch network, which has none).
    pub fn dropout(&self) -> f64 {
        match self {
            Self::Mlp(c) => c.dropout,
            Self::Cnn(c) => c.dropout,
            Self::Lstm(c) => c.dropout,
            Self::Transformer(c) => c.dropout,
            Self::Scratch(_) => 0.0,
            Self::Forecast(c) => c.dropout,
        }
    }

    /// The same configuration with dropout rate `p` (the from-scratch network has none and is
    /// returned unchanged).
    pub fn with_dropout(self, p: f64) -> Self {
        match self {
            Self::Mlp(c) => Self::Mlp(c.with_dropout(p)),
            Self::Cnn(c) => Self::Cnn(c.with_dropout(p)),
            Self::Lstm(c) => Self::Lstm(c.with_dropout(p)),
            Self::Transformer(c) => Self::Transformer(c.with_dropout(p)),
            Self::Scratch(c) => Self::Scratch(c),
            Self::Forecast(c) => Self::Forecast(c.with_dropout(p)),
        }
    }

    /// The configuration as JSON (the `model_config` of a checkpoint), read back by
    /// [`from_json`](Self::from_json).
    pub fn to_json(&self) -> serde_json::Value {
        let value = match self {
            Self::Mlp(c) => serde_json::to_value(c),
            Self::Cnn(c) => serde_json::to_value(c),
            Self::Lstm(c) => serde_json::to_value(c),
            Self::Transformer(c) => serde_json::to_value(c),
            Self::Scratch(c) => serde_json::to_value(c),
            Self::Forecast(c) => serde_json::to_value(c),
        };
        // The configs are plain structs of numbers, strings and enums: serde_json cannot fail
        // on them (it fails only on maps with non-string keys and failing `Serialize` impls).
        value.unwrap_or(serde_json::Value::Null)
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
