//! Small traits that the models share.

use burn::module::Module;
use burn::tensor::Tensor;

/// A network that maps a batch of inputs to class logits `[batch, num_classes]`.
///
/// The input type differs per model (images `Tensor<4>`, sequences `Tensor<3>`, token ids
/// `Tensor<2, Int>`), so it is an associated type. Training loops, evaluation and the
/// command-line program are written once against this trait.
///
/// ```
/// use burn::module::Module;
/// use burn::nn::{Linear, LinearConfig};
/// use burn::tensor::{Device, Tensor};
/// use dl_core::Classifier;
///
/// #[derive(Module, Debug)]
/// struct Probe { linear: Linear }
///
/// impl Classifier for Probe {
///     type Input = Tensor<2>;
///     fn logits(&self, input: Tensor<2>) -> Tensor<2> { self.linear.forward(input) }
///     fn num_classes(&self) -> usize { self.linear.weight.dims()[1] }
/// }
///
/// let device = dl_core::BackendKind::Flex.device().unwrap();
/// let probe = Probe { linear: LinearConfig::new(4, 3).init(&device) };
/// assert_eq!(probe.num_classes(), 3);
/// assert_eq!(probe.parameter_count(), 4 * 3 + 3);
/// assert_eq!(probe.logits(Tensor::zeros([2, 4], &device)).dims(), [2, 3]);
/// ```
pub trait Classifier: Module {
    /// What one batch looks like.
    type Input;

    /// Class scores before softmax, `[batch, num_classes]`.
    fn logits(&self, input: Self::Input) -> Tensor<2>;

    /// Number of classes the logits cover.
    fn num_classes(&self) -> usize;

    /// Number of trainable scalars, counted as PyTorch's
    /// `sum(p.numel() for p in model.parameters())` counts them.
    fn parameter_count(&self) -> usize {
        self.num_params()
    }
}
