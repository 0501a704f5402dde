//! Any network of this crate behind one type, for code that picks the model at run time (the
//! `dl` program, checkpoint loading), and the two macros that run generic code on it.

use burn::module::Module;
use burn::tensor::Device;
use dl_core::Result;

use crate::{Cnn, LstmClassifier, LstmForecaster, Mlp, ModelConfig, ScratchMlp};
use crate::{ModelKind, TransformerClassifier};

/// One network of any [`ModelKind`], built by [`ModelConfig::init`].
///
/// Code generic over Burn's [`Module`] runs on it through [`with_network!`](crate::with_network)
/// (borrow or consume the network) and [`map_network!`](crate::map_network) (get a network of
/// the same variant back). Boxing the larger variants would buy nothing: a program holds one.
///
/// ```
/// use burn::module::Module;
/// use dl_models::{ModelKind, Network, with_network};
///
/// let device = dl_core::BackendKind::Flex.device()?;
/// let net: Network = ModelKind::Mlp.default_config().init(&device)?;
/// let params = with_network!(&net, m => m.num_params());
/// assert_eq!(params, ModelKind::Mlp.default_config().num_params()?);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Network {
    /// `mlp`.
    Mlp(Mlp),
    /// `cnn` and `image-cnn`.
    Cnn(Cnn),
    /// `lstm`.
    Lstm(LstmClassifier),
    /// `transformer`.
    Transformer(TransformerClassifier),
    /// `scratch`.
    Scratch(ScratchMlp),
    /// `forecast`.
    Forecast(LstmForecaster),
}

/// Run an expression with `$m` bound to the network inside a [`Network`], whatever its type.
///
/// `with_network!(&net, m => m.num_params())` borrows; `with_network!(net, m => ...)` consumes.
/// The expression must have one type for every variant.
#[macro_export]
macro_rules! with_network {
    ($net:expr, $m:ident => $body:expr) => {
        match $net {
            $crate::Network::Mlp($m) => $body,
            $crate::Network::Cnn($m) => $body,
            $crate::Network::Lstm($m) => $body,
            $crate::Network::Transformer($m) => $body,
            $crate::Network::Scratch($m) => $body,
            $crate::Network::Forecast($m) => $body,
        }
    };
}

/// Run an expression that gives back a network of the same type as `$m` (a loaded, stepped or
/// inference copy) and wrap it in its [`Network`] variant again.
///
/// ```
/// use burn::module::Module;
/// use dl_models::{ModelKind, Network, map_network};
///
/// let device = dl_core::BackendKind::Flex.device()?;
/// let net = ModelKind::Cnn.default_config().init(&device)?;
/// let valid: Network = map_network!(&net, m => m.valid());
/// assert!(matches!(valid, Network::Cnn(_)));
/// # Ok::<(), dl_core::Error>(())
/// ```
#[macro_export]
macro_rules! map_network {
    ($net:expr, $m:ident => $body:expr) => {
        match $net {
            $crate::Network::Mlp($m) => $crate::Network::Mlp($body),
            $crate::Network::Cnn($m) => $crate::Network::Cnn($body),
            $crate::Network::Lstm($m) => $crate::Network::Lstm($body),
            $crate::Network::Transformer($m) => $crate::Network::Transformer($body),
            $crate::Network::Scratch($m) => $crate::Network::Scratch($body),
            $crate::Network::Forecast($m) => $crate::Network::Forecast($body),
        }
    };
}

/// Run an expression with `$m` bound to the network when it is one of the classifiers
/// ([`dl_core::Classifier`]: `mlp`, `cnn`/`image-cnn`, `lstm`, `transformer`), or the fallback
/// with `$other` bound to the [`Network`] when it is not.
///
/// ```
/// use dl_core::Classifier;
/// use dl_models::{ModelKind, with_classifier};
///
/// let device = dl_core::BackendKind::Flex.device()?;
/// let classes = |kind: ModelKind| -> dl_core::Result<Option<usize>> {
///     let net = kind.default_config().init(&device)?;
///     Ok(with_classifier!(&net, m => Some(m.num_classes()), _other => None))
/// };
/// assert_eq!(classes(ModelKind::Cnn)?, Some(10));
/// assert_eq!(classes(ModelKind::Forecast)?, None);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[macro_export]
macro_rules! with_classifier {
    ($net:expr, $m:ident => $body:expr, $other:ident => $fallback:expr) => {
        match $net {
            $crate::Network::Mlp($m) => $body,
            $crate::Network::Cnn($m) => $body,
            $crate::Network::Lstm($m) => $body,
            $crate::Network::Transformer($m) => $body,
            $other => $fallback,
        }
    };
}

impl Network {
    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        with_network!(self, m => m.num_params())
    }

    /// The same network for inference (dropout off, no autodiff).
    pub fn valid(&self) -> Self {
        map_network!(self, m => m.valid())
    }
}

impl ModelConfig {
    /// Build the network on `device` (seed the device first for reproducible weights); an
    /// invalid setting is an error naming it.
    ///
    /// ```
    /// use dl_models::{ModelKind, Network};
    ///
    /// let device = dl_core::BackendKind::Flex.device()?;
    /// let net = ModelKind::Lstm.default_config().init(&device)?;
    /// assert!(matches!(net, Network::Lstm(_)));
    /// # Ok::<(), dl_core::Error>(())
    /// ```
    pub fn init(&self, device: &Device) -> Result<Network> {
        Ok(match self {
            Self::Mlp(c) => Network::Mlp(c.init(device)?),
            Self::Cnn(c) => Network::Cnn(c.init(device)?),
            Self::Lstm(c) => Network::Lstm(c.init(device)?),
            Self::Transformer(c) => Network::Transformer(c.init(device)?),
            Self::Scratch(c) => Network::Scratch(c.init(device)?),
            Self::Forecast(c) => Network::Forecast(c.init(device)?),
        })
    }
}

impl ModelKind {
    /// The configuration this network has when nothing else is asked for: the one `dl train`
    /// trains on the committed data, 28x28 digits of ten classes (each model reads them in
    /// the shape [`ModelKind::example_shape`] gives) or, for `forecast`, weekly CO2 values.
    ///
    /// - `mlp`, `cnn`, `image-cnn`: the configs' defaults ([`crate::CnnConfig::image_cnn`]).
    /// - `lstm`: a digit row of 28 pixels per time step, ten classes.
    /// - `transformer`: the 16 7x7 patches of a digit as tokens, read through a linear patch
    ///   embedding.
    /// - `scratch`: 784 → 128 → 10 with softmax + cross-entropy and He initialisation
    ///   (`init_scale` 0): the chapter's 0.01 makes a 3-layer ReLU network start very slowly.
    /// - `forecast`: hidden size 32, chosen on the validation weeks (docs/cli.md).
    ///
    /// ```
    /// use dl_models::{ModelConfig, ModelKind};
    ///
    /// let ModelConfig::Lstm(lstm) = ModelKind::Lstm.default_config() else { unreachable!() };
    /// assert_eq!((lstm.input_size, lstm.num_classes), (28, 10));
    /// ```
    pub fn default_config(self) -> ModelConfig {
        use crate::{
            CnnConfig, LstmClassifierConfig, LstmForecasterConfig, MlpConfig, ScratchMlpConfig,
            ScratchOutput, TransformerClassifierConfig,
        };
        match self {
            ModelKind::Mlp => ModelConfig::Mlp(MlpConfig::new()),
            ModelKind::Cnn => ModelConfig::Cnn(CnnConfig::new()),
            ModelKind::ImageCnn => ModelConfig::Cnn(CnnConfig::image_cnn()),
            ModelKind::Lstm => ModelConfig::Lstm(
                LstmClassifierConfig::new()
                    .with_input_size(DIGIT_SIDE)
                    .with_num_classes(DIGIT_CLASSES),
            ),
            ModelKind::Transformer => ModelConfig::Transformer(
                TransformerClassifierConfig::new()
                    .with_patch_size(Some(PATCH_SIDE * PATCH_SIDE))
                    .with_max_seq_length(DIGIT_PATCHES),
            ),
            ModelKind::Scratch => ModelConfig::Scratch(
                ScratchMlpConfig::new(vec![DIGIT_SIDE * DIGIT_SIDE, 128, DIGIT_CLASSES])
                    .with_output(ScratchOutput::Softmax)
                    .with_init_scale(0.0),
            ),
            ModelKind::Forecast => {
                ModelConfig::Forecast(LstmForecasterConfig::new().with_hidden_size(32))
            }
        }
    }

    /// The shape of one example (no batch dimension) that the network in its
    /// [`default_config`](Self::default_config) reads; for `forecast`, `window` weeks of one
    /// value each.
    ///
    /// - `mlp`, `scratch`: `[784]`, a digit's pixels in a row.
    /// - `cnn`: `[1, 28, 28]`; `image-cnn`: `[3, 64, 64]` (a digit upscaled).
    /// - `lstm`: `[28, 28]`, 28 time steps (rows) of 28 features.
    /// - `transformer`: `[16, 49]`, 16 tokens, one per 7x7 patch, each the patch's 49 values.
    /// - `forecast`: `[window, 1]`.
    ///
    /// ```
    /// use dl_models::ModelKind;
    ///
    /// assert_eq!(ModelKind::ImageCnn.example_shape(0), vec![3, 64, 64]);
    /// assert_eq!(ModelKind::Forecast.example_shape(52), vec![52, 1]);
    /// ```
    pub fn example_shape(self, window: usize) -> Vec<usize> {
        match self {
            ModelKind::Mlp | ModelKind::Scratch => vec![DIGIT_SIDE * DIGIT_SIDE],
            ModelKind::Cnn => vec![1, DIGIT_SIDE, DIGIT_SIDE],
            ModelKind::ImageCnn => vec![3, IMAGE_CNN_SIDE, IMAGE_CNN_SIDE],
            ModelKind::Lstm => vec![DIGIT_SIDE, DIGIT_SIDE],
            ModelKind::Transformer => vec![DIGIT_PATCHES, PATCH_SIDE * PATCH_SIDE],
            ModelKind::Forecast => vec![window, 1],
        }
    }
}

/// Side of a digit image (28x28 grey pixels).
pub const DIGIT_SIDE: usize = 28;
/// Digit classes (0-9).
pub const DIGIT_CLASSES: usize = 10;
/// Side of the `image-cnn` input (a digit upscaled to 3x64x64).
pub const IMAGE_CNN_SIDE: usize = 64;
/// Side of a transformer patch (7x7 pixels).
pub const PATCH_SIDE: usize = 7;
/// Patches (tokens) of one digit for the transformer: 4 x 4.
pub const DIGIT_PATCHES: usize = (DIGIT_SIDE / PATCH_SIDE) * (DIGIT_SIDE / PATCH_SIDE);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every default configuration builds, reads the example shape it claims, and round-trips
    /// through the JSON a checkpoint records.
    #[test]
    fn every_default_builds_and_reads_its_example_shape() {
        use crate::TransformerInput;
        use burn::tensor::Tensor;
        let device = dl_core::BackendKind::Flex.device().unwrap();
        for kind in ModelKind::ALL {
            let config = kind.default_config();
            let net = config.init(&device).unwrap();
            assert_eq!(net.num_params(), config.num_params().unwrap(), "{kind}");
            let json = config.to_json();
            let back = ModelConfig::from_json(kind, &json).unwrap();
            assert_eq!(back.to_json(), json, "{kind}");

            let mut dims = vec![2];
            dims.extend(kind.example_shape(5));
            let out = match &net {
                Network::Mlp(m) => m.forward(Tensor::zeros([dims[0], dims[1]], &device)),
                Network::Scratch(m) => m.logits(Tensor::zeros([dims[0], dims[1]], &device)),
                Network::Cnn(m) => {
                    m.forward(Tensor::zeros([dims[0], dims[1], dims[2], dims[3]], &device))
                }
                Network::Lstm(m) => m.forward(Tensor::zeros([dims[0], dims[1], dims[2]], &device)),
                Network::Forecast(m) => {
                    m.forward(Tensor::zeros([dims[0], dims[1], dims[2]], &device))
                }
                Network::Transformer(m) => m.forward(TransformerInput::Patches(Tensor::zeros(
                    [dims[0], dims[1], dims[2]],
                    &device,
                ))),
            };
            let classes = if kind.is_forecast() { 1 } else { DIGIT_CLASSES };
            assert_eq!(out.dims(), [2, classes], "{kind}");
        }
    }
}
