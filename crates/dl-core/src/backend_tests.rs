//! The one list of backends that every parity test runs on.

/// One `#[test]` per backend that runs on any machine's CPU — `flex`, `ndarray` and `tch`
/// (LibTorch) — each compiled only when the calling crate's cargo feature of that name is on,
/// and each calling `$check` with its [`BackendKind`](crate::BackendKind).
///
/// Every dl-rs crate has the features `flex`, `ndarray` and `tch`, so `cargo test` runs a
/// parity suite on the two default backends and `cargo test --features tch` (with LibTorch
/// installed by `cargo xtask libtorch`) on LibTorch too. GPU backends are checked by
/// `cargo xtask parity`, which can report a backend that cannot start here instead of failing.
/// Put the call in a module named for the check, so the tests read `module::flex`,
/// `module::ndarray`, `module::tch`.
///
/// ```
/// fn check(kind: dl_core::BackendKind) {
///     let device = kind.device().unwrap();
///     let x = dl_core::burn::tensor::Tensor::<1>::ones([3], &device);
///     assert_eq!(x.sum().into_scalar::<f32>(), 3.0);
/// }
///
/// mod sums_match {
///     dl_core::per_backend_tests!(super::check);
/// }
/// ```
#[macro_export]
macro_rules! per_backend_tests {
    ($check:expr) => {
        #[cfg(feature = "flex")]
        #[test]
        fn flex() {
            ($check)($crate::BackendKind::Flex);
        }

        #[cfg(feature = "ndarray")]
        #[test]
        fn ndarray() {
            ($check)($crate::BackendKind::NdArray);
        }

        #[cfg(feature = "tch")]
        #[test]
        fn tch() {
            ($check)($crate::BackendKind::Tch);
        }
    };
}
