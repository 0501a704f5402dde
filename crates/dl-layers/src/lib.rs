//! Layers with PyTorch's parameter layouts and names, for any Burn device.
//!
//! Filled by the layers-and-models work (issue 3): dense, convolution block, packed
//! multi-layer LSTM, multi-head attention, transformer block, positional encoding.
