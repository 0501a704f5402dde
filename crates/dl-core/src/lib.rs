//! Shared foundations of the dl-rs crates: backend selection, errors, seeding, tensor
//! comparison and the traits models share.
//!
//! Every API in dl-rs takes a Burn [`Device`](burn::tensor::Device) and never names a backend:
//! the same code runs on Flex (the default), NdArray, LibTorch, wgpu and CUDA, each compiled in
//! by the cargo feature of the same name. [`BackendKind`] turns a user's backend name into a
//! device, or into an error that names the feature to enable.
//!
//! ```
//! use dl_core::{BackendKind, seed_device};
//! let kind: BackendKind = "flex".parse()?;
//! let device = kind.autodiff_device()?;
//! seed_device(&device, 42);
//! # Ok::<(), dl_core::Error>(())
//! ```

mod backend;
mod backend_tests;
mod compare;
mod error;
mod fixture;
mod seed;
mod threads;
mod traits;
pub mod validate;

pub use backend::BackendKind;
pub use compare::{
    CompareReport, Tolerance, assert_close, compare, compare_slices, compare_tensors,
};
pub use error::{Error, Result};
pub use fixture::{Fixture, config_from_case, fixtures_dir};
pub use seed::{SeededRng, seed_device};
pub use threads::{compute_threads, on_compute_threads};
pub use traits::{Classifier, FromTensorData};

/// Burn, re-exported so that users of a single dl-rs crate get the matching version.
pub use burn;
