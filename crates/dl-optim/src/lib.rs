//! Optimizers with PyTorch semantics (in progress).
