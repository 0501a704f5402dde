//! Switching layers between training and evaluation behaviour without leaving autodiff.

use burn::module::{Flag, Module, ModuleMapper, Param};

/// Set every training flag in `module` (dropout, batch norm, ...) to `training`, leaving
/// parameters, gradient tracking and the device as they are.
///
/// This is PyTorch's `module.train(training)`: `set_training(m, false)` is `m.eval()`. Burn
/// layers behave as in training only when their input is on an autodiff device *and* their
/// flag is enabled, so on an autodiff device this switches dropout off and makes batch norm
/// use (and keep) its running statistics, while gradients still flow to every parameter —
/// what a PyTorch evaluation with autograd does. On a plain device every layer already
/// behaves as in evaluation, whatever its flags.
///
/// [`Module::valid`] instead leaves autodiff altogether (for inference), and
/// [`Module::freeze`] also stops gradients.
///
/// ```
/// use burn::module::Module;
/// use burn::tensor::Tensor;
/// use dl_layers::{set_training, TransformerBlockConfig};
///
/// let device = dl_core::BackendKind::Flex.autodiff_device()?;
/// let block = TransformerBlockConfig::new(8, 2, 16).init(&device)?;
/// let x = Tensor::<3>::ones([1, 3, 8], &device);
/// let eval = set_training(block, false);
/// // With dropout off the forward pass is deterministic, and still differentiable.
/// let a = eval.forward(x.clone());
/// let b = eval.forward(x);
/// a.clone().into_data().assert_eq(&b.into_data(), true);
/// assert!(eval.attention.in_proj_weight.val().grad(&a.sum().backward()).is_some());
/// # Ok::<(), dl_core::Error>(())
/// ```
pub fn set_training<M: Module>(module: M, training: bool) -> M {
    struct SetFlags {
        training: bool,
    }

    impl ModuleMapper for SetFlags {
        fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
            flag.with_value(self.training)
        }
    }

    module.map(&mut SetFlags { training })
}
