//! The models the parity checks cover, and how each is built from its fixture configuration.

use std::fmt;
use std::str::FromStr;

use dl_core::{Error, Result, config_from_case};
use serde::Serialize;
use serde::de::DeserializeOwned;
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

/// The `XConfig` a fixture case describes: `defaults` with every field the case sets (serde;
/// the case's `model` key is bookkeeping). Dropout is set by the caller, which runs each model
/// both with the fixture's rate and without.
pub(crate) fn fixture_config<C: Serialize + DeserializeOwned>(
    defaults: C,
    case: &Value,
) -> Result<C> {
    config_from_case(&defaults, case, &["model"])
}
