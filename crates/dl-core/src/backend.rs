//! Choosing a backend by name at run time.
//!
//! Burn 0.22 dispatches on the [`Device`]: there is no backend type parameter, and each backend
//! is compiled in by a cargo feature. [`BackendKind`] is the one place that maps a user-facing
//! name (`"flex"`, `"ndarray"`, `"tch"`, ...) to a device, and that says which cargo feature to
//! enable when a backend is missing.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::error::{Error, Result};

/// A backend that dl-rs can run on.
///
/// ```
/// use dl_core::BackendKind;
/// let kind: BackendKind = "flex".parse().unwrap();
/// assert_eq!(kind, BackendKind::Flex);
/// let device = kind.device().unwrap();
/// assert!(!device.is_autodiff());
/// assert!(kind.autodiff_device().unwrap().is_autodiff());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendKind {
    /// Burn's pure-Rust CPU backend; the default.
    Flex,
    /// The ndarray CPU backend (deprecated by Burn, still supported).
    NdArray,
    /// LibTorch on the CPU, through `burn-tch`.
    Tch,
    /// LibTorch on the first CUDA GPU, through `burn-tch`. Needs a program linked against
    /// `libtorch_cuda.so` (docs/backends.md) and an NVIDIA driver; otherwise
    /// [`BackendKind::device`] says which of the two is missing.
    TchCuda,
    /// wgpu on the default adapter, with Burn's automatic choice of graphics API (Vulkan,
    /// Metal or DirectX; on a machine without a GPU, a software renderer).
    Wgpu,
    /// wgpu pinned to the Vulkan API: an error instead of a silent fallback to another API
    /// or a software renderer (use it for GPU timings).
    WgpuVulkan,
    /// CubeCL's CUDA runtime on the first GPU.
    Cuda,
}

impl BackendKind {
    /// Every backend, compiled in or not, in the order tables list them.
    pub const ALL: [BackendKind; 7] = [
        BackendKind::Flex,
        BackendKind::NdArray,
        BackendKind::Tch,
        BackendKind::TchCuda,
        BackendKind::Wgpu,
        BackendKind::WgpuVulkan,
        BackendKind::Cuda,
    ];

    /// The name used on the command line and in reports.
    ///
    /// ```
    /// assert_eq!(dl_core::BackendKind::TchCuda.name(), "tch-cuda");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::NdArray => "ndarray",
            BackendKind::Tch => "tch",
            BackendKind::TchCuda => "tch-cuda",
            BackendKind::Wgpu => "wgpu",
            BackendKind::WgpuVulkan => "wgpu-vulkan",
            BackendKind::Cuda => "cuda",
        }
    }

    /// The cargo feature (of every dl-rs crate) that compiles this backend in.
    ///
    /// ```
    /// assert_eq!(dl_core::BackendKind::TchCuda.cargo_feature(), "tch");
    /// ```
    pub fn cargo_feature(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::NdArray => "ndarray",
            BackendKind::Tch | BackendKind::TchCuda => "tch",
            BackendKind::Wgpu | BackendKind::WgpuVulkan => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }

    /// Whether this build has the backend compiled in.
    ///
    /// ```
    /// assert!(dl_core::BackendKind::Flex.is_compiled());
    /// ```
    pub fn is_compiled(self) -> bool {
        match self {
            BackendKind::Flex => cfg!(feature = "flex"),
            BackendKind::NdArray => cfg!(feature = "ndarray"),
            BackendKind::Tch | BackendKind::TchCuda => cfg!(feature = "tch"),
            BackendKind::Wgpu | BackendKind::WgpuVulkan => cfg!(feature = "wgpu"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// The backends compiled into this build.
    ///
    /// ```
    /// assert!(dl_core::BackendKind::compiled().contains(&dl_core::BackendKind::Flex));
    /// ```
    pub fn compiled() -> Vec<BackendKind> {
        Self::ALL.into_iter().filter(|k| k.is_compiled()).collect()
    }

    /// Parse a comma-separated list such as `"flex,ndarray"`; `"all"` means every backend.
    ///
    /// ```
    /// use dl_core::BackendKind;
    /// let kinds = BackendKind::parse_list("flex, ndarray").unwrap();
    /// assert_eq!(kinds, vec![BackendKind::Flex, BackendKind::NdArray]);
    /// assert!(BackendKind::parse_list("flex,metal").is_err());
    /// ```
    pub fn parse_list(list: &str) -> Result<Vec<BackendKind>> {
        if list.trim() == "all" {
            return Ok(Self::ALL.to_vec());
        }
        let mut kinds = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let kind: BackendKind = name.parse()?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        Ok(kinds)
    }

    /// A plain (inference) device of this backend.
    ///
    /// Returns [`Error::BackendNotCompiled`], naming the cargo feature, when this build does
    /// not include the backend, and [`Error::BackendUnavailable`] when it is compiled in but
    /// cannot start here (`wgpu-vulkan` without a Vulkan driver, `tch-cuda` without CUDA).
    pub fn device(self) -> Result<Device> {
        if !self.is_compiled() {
            return Err(Error::BackendNotCompiled {
                backend: self.name().to_string(),
                feature: self.cargo_feature().to_string(),
            });
        }
        #[cfg(feature = "wgpu")]
        if self == BackendKind::WgpuVulkan {
            return wgpu_vulkan();
        }
        #[cfg(feature = "tch")]
        if self == BackendKind::TchCuda {
            libtorch_cuda_available()?;
        }
        Ok(self.compiled_device())
    }

    /// The same device with autodiff enabled, for training.
    pub fn autodiff_device(self) -> Result<Device> {
        Ok(self.device()?.autodiff())
    }

    // Only called once `is_compiled` said yes, so every arm whose feature is off is unreachable.
    #[allow(deprecated, unreachable_code)]
    fn compiled_device(self) -> Device {
        match self {
            #[cfg(feature = "flex")]
            BackendKind::Flex => Device::flex(),
            #[cfg(feature = "ndarray")]
            BackendKind::NdArray => Device::ndarray(),
            #[cfg(feature = "tch")]
            BackendKind::Tch => Device::libtorch(),
            #[cfg(feature = "tch")]
            BackendKind::TchCuda => Device::libtorch_cuda(0),
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
            #[cfg(feature = "cuda")]
            BackendKind::Cuda => Device::cuda(0),
            #[allow(unreachable_patterns)]
            _ => Device::default(),
        }
    }
}

/// The wgpu device on the Vulkan API, initialised once per process (Burn refuses to initialise
/// the same runtime twice, so the first result, device or error, is kept).
#[cfg(feature = "wgpu")]
fn wgpu_vulkan() -> Result<Device> {
    use std::sync::OnceLock;

    use burn::tensor::wgpu::WgpuBackend;

    static DEVICE: OnceLock<std::result::Result<Device, String>> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            Device::wgpu_options()
                .graphics_api(WgpuBackend::Vulkan)
                .init()
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|reason| Error::BackendUnavailable {
            backend: BackendKind::WgpuVulkan.name().to_string(),
            reason,
        })
}

/// Checks that LibTorch can reach a CUDA device, before the first tensor op would fail inside
/// LibTorch (burn-tch panics there). `tch::Cuda::is_available()` is false both when the
/// program was linked without `libtorch_cuda.so` (torch-sys links it only when it is in
/// `$LIBTORCH/lib`) and when the machine has no driver or GPU: the message tells them apart.
#[cfg(feature = "tch")]
fn libtorch_cuda_available() -> Result<()> {
    if tch::Cuda::is_available() {
        return Ok(());
    }
    let loaded = std::fs::read_to_string("/proc/self/maps")
        .map(|maps| maps.contains("libtorch_cuda.so"))
        .unwrap_or(false);
    let reason = if loaded {
        "libtorch_cuda.so is loaded but LibTorch finds no CUDA device (no NVIDIA driver or GPU \
         on this machine?)"
    } else {
        "this program is linked against a CPU-only LibTorch (no libtorch_cuda.so); build it \
         against a LIBTORCH whose lib/ holds libtorch_cuda.so (docs/backends.md, `cargo xtask \
         gpu-bundle`)"
    };
    Err(Error::BackendUnavailable {
        backend: BackendKind::TchCuda.name().to_string(),
        reason: reason.to_string(),
    })
}

impl Default for BackendKind {
    /// Flex when compiled in, else the first compiled backend.
    fn default() -> Self {
        Self::compiled()
            .first()
            .copied()
            .unwrap_or(BackendKind::Flex)
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = Error;

    /// Case-insensitive; `libtorch` is accepted for `tch` and `libtorch-cuda` for `tch-cuda`.
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        let kind = match lower.as_str() {
            "flex" => BackendKind::Flex,
            "ndarray" => BackendKind::NdArray,
            "tch" | "libtorch" => BackendKind::Tch,
            "tch-cuda" | "libtorch-cuda" => BackendKind::TchCuda,
            "wgpu" => BackendKind::Wgpu,
            "wgpu-vulkan" | "vulkan" => BackendKind::WgpuVulkan,
            "cuda" => BackendKind::Cuda,
            _ => {
                return Err(Error::UnknownBackend {
                    name: s.to_string(),
                    expected: Self::ALL.map(|k| k.name()).join(", "),
                });
            }
        };
        Ok(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in BackendKind::ALL {
            assert_eq!(kind.name().parse::<BackendKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.name());
        }
        assert_eq!("LibTorch".parse::<BackendKind>(), Ok(BackendKind::Tch));
    }

    #[test]
    fn unknown_name_lists_the_valid_ones() {
        let err = "metal".parse::<BackendKind>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`metal`"), "{msg}");
        assert!(
            msg.contains("flex, ndarray, tch, tch-cuda, wgpu, wgpu-vulkan, cuda"),
            "{msg}"
        );
    }

    #[test]
    fn missing_backend_names_its_feature() {
        for kind in BackendKind::ALL.into_iter().filter(|k| !k.is_compiled()) {
            let err = kind.device().unwrap_err();
            assert_eq!(
                err,
                Error::BackendNotCompiled {
                    backend: kind.name().into(),
                    feature: kind.cargo_feature().into()
                }
            );
            assert!(err.to_string().contains("--features"));
        }
    }

    #[test]
    fn compiled_backends_give_devices() {
        for kind in BackendKind::compiled() {
            if matches!(
                kind,
                BackendKind::TchCuda
                    | BackendKind::Cuda
                    | BackendKind::Wgpu
                    | BackendKind::WgpuVulkan
            ) {
                continue; // needs hardware this machine may not have
            }
            // The device computes: 1 + [1, 2] read back from it.
            let device = kind.device().expect("device");
            assert!(!device.is_autodiff(), "{kind}");
            let sum = burn::tensor::Tensor::<1>::from_floats([1.0, 2.0], &device).add_scalar(1.0);
            assert_eq!(
                sum.into_data().iter::<f32>().collect::<Vec<_>>(),
                [2.0, 3.0],
                "{kind}"
            );
            assert!(kind.autodiff_device().expect("device").is_autodiff());
        }
    }

    /// With a CPU-only LibTorch (the CI build), `tch-cuda` is an error that says how to get
    /// CUDA, not a panic at the first tensor op.
    #[cfg(feature = "tch")]
    #[test]
    fn tch_cuda_without_cuda_is_an_error_not_a_panic() {
        if tch::Cuda::is_available() {
            assert!(BackendKind::TchCuda.device().is_ok());
            return;
        }
        let err = BackendKind::TchCuda.device().unwrap_err();
        let Error::BackendUnavailable { backend, reason } = &err else {
            panic!("expected BackendUnavailable, got {err:?}");
        };
        assert_eq!(backend, "tch-cuda");
        assert!(reason.contains("libtorch_cuda.so"), "{reason}");
    }
}
