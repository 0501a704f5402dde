//! The list of networks, by the names the `dl` program, checkpoints and the parity fixtures use.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One network of this crate, as users name it.
///
/// `name` is what `dl train MODEL` and checkpoints say (`image-cnn`); `case_name` is the same
/// in snake case, as the PyTorch fixture generators name their cases (`image_cnn`). Parsing
/// accepts either spelling, in any case.
///
/// ```
/// use dl_models::ModelKind;
///
/// let kind: ModelKind = "image_cnn".parse()?;
/// assert_eq!(kind, ModelKind::ImageCnn);
/// assert_eq!((kind.name(), kind.case_name(), kind.type_name()), ("image-cnn", "image_cnn", "ImageCnn"));
/// assert_eq!(ModelKind::ALL.len(), 7);
/// assert!("resnet".parse::<ModelKind>().unwrap_err().to_string().contains("image-cnn"));
/// # Ok::<(), dl_models::UnknownModel>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// [`crate::Mlp`]: the training pipeline's `nn.Sequential`.
    Mlp,
    /// [`crate::Cnn`]: the chapter's `ConvolutionalNeuralNetwork`, one-channel images.
    Cnn,
    /// [`crate::ImageCnn`]: the image-classification case, three-channel images.
    #[serde(alias = "image_cnn")]
    ImageCnn,
    /// [`crate::LstmClassifier`]: the chapter's `LongShortTermMemory`.
    Lstm,
    /// [`crate::TransformerClassifier`]: the chapter's `Transformer`.
    Transformer,
    /// [`crate::ScratchMlp`]: the chapter's NumPy `DeepNeuralNetwork`.
    Scratch,
    /// [`crate::LstmForecaster`]: the sequence-prediction case (regression).
    Forecast,
}

impl ModelKind {
    /// Every network, in the order tables list them.
    pub const ALL: [ModelKind; 7] = [
        ModelKind::Mlp,
        ModelKind::Cnn,
        ModelKind::ImageCnn,
        ModelKind::Lstm,
        ModelKind::Transformer,
        ModelKind::Scratch,
        ModelKind::Forecast,
    ];

    /// The name on the command line and in checkpoints (`image-cnn`).
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Mlp => "mlp",
            ModelKind::Cnn => "cnn",
            ModelKind::ImageCnn => "image-cnn",
            ModelKind::Lstm => "lstm",
            ModelKind::Transformer => "transformer",
            ModelKind::Scratch => "scratch",
            ModelKind::Forecast => "forecast",
        }
    }

    /// The name in snake case, as fixture cases are named (`image_cnn`).
    pub fn case_name(self) -> &'static str {
        match self {
            ModelKind::ImageCnn => "image_cnn",
            other => other.name(),
        }
    }

    /// The Rust type of the network (`LstmClassifier`).
    pub fn type_name(self) -> &'static str {
        match self {
            ModelKind::Mlp => "Mlp",
            ModelKind::Cnn => "Cnn",
            ModelKind::ImageCnn => "ImageCnn",
            ModelKind::Lstm => "LstmClassifier",
            ModelKind::Transformer => "TransformerClassifier",
            ModelKind::Scratch => "ScratchMlp",
            ModelKind::Forecast => "LstmForecaster",
        }
    }

    /// Whether the network forecasts a series (regression) rather than classifying.
    pub fn is_forecast(self) -> bool {
        self == ModelKind::Forecast
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A model name that is none of [`ModelKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown model `{0}`, expected one of mlp, cnn, image-cnn, lstm, transformer, scratch, forecast"
)]
pub struct UnknownModel(pub String);

impl FromStr for ModelKind {
    type Err = UnknownModel;

    fn from_str(s: &str) -> Result<Self, UnknownModel> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        ModelKind::ALL
            .into_iter()
            .find(|kind| kind.name() == wanted)
            .ok_or_else(|| UnknownModel(s.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_in_both_spellings() {
        for kind in ModelKind::ALL {
            assert_eq!(kind.name().parse::<ModelKind>(), Ok(kind));
            assert_eq!(kind.case_name().parse::<ModelKind>(), Ok(kind));
            assert_eq!(kind.name().to_uppercase().parse::<ModelKind>(), Ok(kind));
        }
        assert_eq!(
            "rnn".parse::<ModelKind>(),
            Err(UnknownModel("rnn".to_string()))
        );
    }

    #[test]
    fn serde_writes_the_command_line_name_and_reads_both() {
        assert_eq!(
            serde_json::to_string(&ModelKind::ImageCnn).unwrap(),
            "\"image-cnn\""
        );
        for text in ["\"image-cnn\"", "\"image_cnn\""] {
            assert_eq!(
                serde_json::from_str::<ModelKind>(text).unwrap(),
                ModelKind::ImageCnn
            );
        }
        assert!(serde_json::from_str::<ModelKind>("\"resnet\"").is_err());
    }
}
