//! Import and export of model weights: PyTorch state dicts, safetensors, ONNX, checkpoints.
//!
//! Filled by the io work (issue 4).
