//! The chapter's networks, numerically identical to their PyTorch definitions.
//!
//! | model | chapter | input |
//! |---|---|---|
//! | [`Mlp`] | training pipeline `nn.Sequential`, 784-512-256-10 | `[batch, 784]` |
//! | [`Cnn`] | `ConvolutionalNeuralNetwork` | `[batch, 1, 28, 28]` |
//! | [`ImageCnn`] | image-classification case | `[batch, 3, 64, 64]` |
//! | [`LstmClassifier`] | `RecurrentNeuralNetwork` / `LongShortTermMemory` | `[batch, time, features]` |
//! | [`LstmForecaster`] | sequence-prediction case (LSTM + linear head, regression) | `[batch, time, features]` |
//! | [`TransformerClassifier`] | `Transformer` (post-norm blocks, sinusoidal positions, mean pooling) | token ids `[batch, seq]` or patches `[batch, seq, features]` |
//! | [`ScratchMlp`] | `DeepNeuralNetwork` (hand-written backprop) | `[batch, features]` |
//!
//! Each has a serde configuration with the chapter's values as defaults and
//! `init(&device)`; every model runs on any Burn device. [`ModelKind`] lists them by the names
//! the `dl` program, checkpoints, the parity fixtures and the benchmarks use, and
//! [`ModelConfig`] reads the configuration of one chosen by name.

mod cnn;
mod lstm_classifier;
mod lstm_forecaster;
mod mlp;
mod model_config;
mod network;
mod registry;
mod scratch;
mod transformer_classifier;

pub use cnn::{Cnn, CnnConfig, ImageCnn};
pub use lstm_classifier::{LstmClassifier, LstmClassifierConfig};
pub use lstm_forecaster::{LstmForecaster, LstmForecasterConfig};
pub use mlp::{Mlp, MlpConfig};
pub use model_config::{InvalidModelConfig, ModelConfig};
pub use network::{DIGIT_CLASSES, DIGIT_PATCHES, DIGIT_SIDE, IMAGE_CNN_SIDE, Network, PATCH_SIDE};
pub use registry::{ModelKind, UnknownModel};
pub use scratch::{
    ScratchActivation, ScratchGradients, ScratchMlp, ScratchMlpConfig, ScratchOutput,
};
pub use transformer_classifier::{
    TransformerClassifier, TransformerClassifierConfig, TransformerInput,
};
