//! The chapter's networks, numerically identical to their PyTorch definitions.
//!
//! Filled by the layers-and-models work (issue 3): `Mlp`, `Cnn`, `ImageCnn`,
//! `LstmClassifier`, `TransformerClassifier` and the from-scratch `ScratchMlp`.
