//! Loss functions with PyTorch semantics (in progress).
