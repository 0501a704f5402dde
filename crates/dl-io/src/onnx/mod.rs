//! ONNX: export of every dl-models network as an inference graph (opset 17), and import of
//! the initializers of an ONNX model as a state dict.
//!
//! The protobuf encoding is written by hand ([`wire`], [`proto`]): the messages ONNX needs
//! are few, and a hand decoder can promise never to allocate by a length it has not checked.

mod builder;
mod error;
mod export;
mod graphs;
mod import;
mod proto;
mod torch_names;
mod wire;

pub use error::OnnxError;
pub use export::{ONNX_OPSET, OnnxExport, OnnxExportOptions, export_onnx};
