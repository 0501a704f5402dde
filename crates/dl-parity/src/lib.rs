//! PyTorch parity checks for every dl-rs model on every backend.
//!
//! For each model of the chapter (MLP, CNN, image CNN, LSTM, Transformer, from-scratch MLP) and
//! each backend compiled in, [`run_parity`] loads the PyTorch weights of
//! `fixtures/models.safetensors`, then compares the logits, the loss, the gradient of every
//! parameter, the weights after 10 Adam and 10 SGD-momentum steps and the attention weights
//! with PyTorch's, and with the flex backend's own result. Tolerances live in
//! [`Check::tolerance`], with the reason for each.
//!
//! `cargo xtask parity` prints the table and writes it under `target/parity/`; the tests of
//! this crate run the same checks on flex and ndarray.
//!
//! ```no_run
//! use dl_core::{BackendKind, Fixture, fixtures_dir};
//! let fixture = Fixture::open(fixtures_dir().join("models.safetensors"))?;
//! let report = dl_parity::run_parity(&fixture, &dl_parity::PARITY_MODELS, &[BackendKind::Flex], None);
//! println!("{}", report.to_markdown());
//! assert!(report.passed());
//! # Ok::<(), dl_core::Error>(())
//! ```

mod check;
mod model;
mod report;
mod run;
mod tolerance;

pub use check::{CheckResult, Reference};
pub use dl_models::ModelKind;
pub use model::{PARITY_MODELS, parse_models};
pub use report::{ParityReport, Skipped, Unavailable, run_parity};
pub use run::{Outputs, Perturbation, compare_outputs, model_outputs, pytorch_outputs};
pub use tolerance::Check;
