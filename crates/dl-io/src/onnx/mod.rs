//! ONNX: export of every dl-models network as an inference graph (opset 17), and import of
//! the initializers of an ONNX model as a state dict.
//!
//! The messages are the protobuf types onnx-ir generates from `onnx.proto` (`ModelProto`,
//! `GraphProto`, …), encoded and parsed by the `protobuf` crate, which checks every length
//! against the input and limits nesting; [`builder`] holds the helpers that fill them.

mod builder;
mod error;
mod export;
mod graphs;
mod import;
mod torch_names;

pub use error::OnnxError;
pub use export::{ONNX_OPSET, OnnxExport, OnnxExportOptions, export_onnx};
