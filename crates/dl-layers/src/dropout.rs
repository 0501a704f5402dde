//! Burn's `Dropout` run through dl-kernels' hashed-mask dropout where the device has it.

use burn::nn::Dropout;
use burn::tensor::Tensor;

/// `dropout.forward(x)` with the same semantics: the identity outside training or off an
/// autodiff device, otherwise each element kept with probability `1 − p` and scaled by
/// `1/(1 − p)`. On Flex (f32) the mask is one pass of [`dl_kernels::dropout`] (a hash of the
/// element index, seeded from the device's RNG) instead of Burn's Bernoulli tensor and two
/// recorded products; every other backend runs Burn's `Dropout::forward`.
///
/// ```
/// use burn::nn::DropoutConfig;
/// use burn::tensor::Tensor;
///
/// let device = dl_core::BackendKind::Flex.device()?;
/// let dropout = DropoutConfig::new(0.5).init();
/// let x = Tensor::<2>::ones([8, 8], &device);
/// // Not an autodiff device: the identity, as Burn's.
/// assert_eq!(dl_layers::dropout_forward(&dropout, x.clone()).to_data(), x.to_data());
/// let train = Tensor::<2>::ones([8, 8], &device.autodiff());
/// let y = dl_layers::dropout_forward(&dropout, train).into_data().to_vec::<f32>().unwrap();
/// assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
/// # Ok::<(), dl_core::Error>(())
/// ```
pub fn dropout_forward<const D: usize>(dropout: &Dropout, x: Tensor<D>) -> Tensor<D> {
    if !dropout.training.is_enabled() || !x.device().is_autodiff() || dropout.prob == 0.0 {
        return x;
    }
    match dl_kernels::dropout(&x, dropout.prob) {
        Some(y) => y,
        None => dropout.forward(x),
    }
}
