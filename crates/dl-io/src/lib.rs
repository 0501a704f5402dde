//! Import and export of model weights: PyTorch state dicts in safetensors files, with
//! PyTorch's names and layouts.
//!
//! ```no_run
//! use dl_io::load_pytorch_safetensors;
//! let device = dl_core::BackendKind::Flex.device()?;
//! let model = dl_models::CnnConfig::new().init(&device)?;
//! // A file written by `safetensors.torch.save_file(model.state_dict(), "cnn.safetensors")`:
//! let (model, report) = load_pytorch_safetensors(model, "cnn.safetensors")?;
//! println!("{report}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Strict loading reports every missing, unexpected and mis-shaped key at once, by name and
//! with both shapes, as PyTorch's `load_state_dict(strict=True)` does.

mod atomic;
mod checkpoint;
mod digits;
mod dtype;
mod error;
mod finite;
mod infer;
mod load;
mod onnx;
mod pytorch;
mod remap;
mod safetensors;
mod state_dict;

pub use atomic::write_atomically;
pub use checkpoint::{
    Checkpoint, CheckpointMeta, load_checkpoint, read_checkpoint_meta, save_checkpoint,
};
pub use digits::{DigitFile, DigitFileError};
pub use error::{Error, Result};
pub use finite::NonFiniteCount;
pub use infer::{InferOptions, InferredArchitecture, Shapes, infer_architecture};
pub use load::{
    LoadMode, LoadReport, ShapeMismatch, grads_with_layout, load_with_layouts,
    state_dict_with_layout,
};
pub use onnx::{ONNX_OPSET, OnnxError, OnnxExport, OnnxExportOptions, export_onnx};
pub use pytorch::read::MAX_EXPANSION;
pub use pytorch::{
    KeyLayout, KeyMapFn, PytorchModel, layout_named, load_pytorch_file, load_pytorch_safetensors,
    load_pytorch_state_dict, pytorch_grads, to_pytorch_state_dict,
};
pub use state_dict::StateDict;
