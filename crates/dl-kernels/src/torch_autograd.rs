//! LibTorch's own autograd behind a Burn autodiff node, for the operations that hand a whole
//! layer to LibTorch (`lstm_torch.rs`, `conv2d_torch.rs`, `relu_max_pool_torch.rs`).
//!
//! The forward pass runs on leaf copies of the inputs Burn tracks (sharing their values, with
//! `requires_grad` set), so LibTorch records its graph on them and never on Burn's tensors. The
//! graph is kept as the state of the Burn node; the backward pass asks LibTorch for the
//! gradients of `Σ output · grad_output` with respect to those leaves (`torch.autograd.grad`),
//! which is exactly the vector-Jacobian product Burn needs, computed by PyTorch's own backward
//! kernels. The graph holds what PyTorch's module would hold for its backward, and is freed
//! after the backward pass.

// burn-tch 0.22 marks itself deprecated in favour of CubeCL backends; LibTorch stays one of
// dl-rs's backends (docs/backends.md), so this module uses it knowingly.
#![allow(deprecated)]

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::libtorch::TchTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, DispatchDevice, LibTorch};
use burn::tensor::{DType, Device};

/// Whether `device` is LibTorch (CPU or CUDA, with or without autodiff) and `dtype` a float type
/// LibTorch's operators take: where every `*_torch.rs` operation runs.
pub(crate) fn is_libtorch_float(device: &Device, dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F64)
        && matches!(
            device.clone().inner().as_dispatch(),
            DispatchDevice::LibTorch(_)
        )
}

/// What the backward pass keeps: LibTorch's output with its autograd graph, the leaves the
/// graph was recorded on (one per tracked input, `None` for the others), and Burn's handles on
/// the inputs' and the output's values.
#[derive(Debug)]
struct Saved {
    output: tch::Tensor,
    leaves: Vec<Option<tch::Tensor>>,
    /// Holding these keeps burn-tch from writing into the inputs' and the output's buffers in
    /// place (it does so only for a storage it holds the one reference to) while LibTorch's
    /// graph may still read them; LibTorch would otherwise refuse the backward pass ("modified
    /// by an inplace operation").
    inputs: Vec<TchTensor>,
    values: TchTensor,
}

impl Clone for Saved {
    fn clone(&self) -> Self {
        Self {
            output: self.output.shallow_clone(),
            inputs: self.inputs.clone(),
            values: self.values.clone(),
            leaves: self
                .leaves
                .iter()
                .map(|l| l.as_ref().map(tch::Tensor::shallow_clone))
                .collect(),
        }
    }
}

/// The backward pass of an operation with `N` tensor inputs: LibTorch's autograd over the
/// saved graph.
#[derive(Debug)]
struct TorchBackward<const N: usize>;

impl<const N: usize> Backward<LibTorch, N> for TorchBackward<N> {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<LibTorch>(&ops.node);
        let Saved { output, leaves, .. } = ops.state;
        let tracked: Vec<&tch::Tensor> = leaves.iter().flatten().collect();
        if tracked.is_empty() {
            return;
        }
        // Σ output · grad as one dot product of the flattened tensors (views when contiguous):
        // its gradient with respect to each leaf is that leaf's share of the vector-Jacobian
        // product, and a dot costs one pass where a product and a sum would cost two.
        let objective = output.reshape([-1]).dot(&grad.tensor.reshape([-1]));
        let computed = tch::Tensor::f_run_backward(&[objective], &tracked, false, false)
            .unwrap_or_else(|e| panic!("LibTorch's autograd failed in a backward pass: {e}"));
        let mut computed = computed.into_iter();
        for (parent, leaf) in ops.parents.iter().zip(&leaves) {
            if leaf.is_none() {
                continue;
            }
            let value = computed.next().expect("one gradient per tracked leaf");
            if let Some(node) = parent {
                // Contiguous like every gradient Burn makes (the gradient of a leaf used through
                // a view can come back strided, and the optimizer's element-wise kernels are
                // slower on strided tensors); a no-op for the contiguous ones.
                grads.register::<LibTorch>(node.id, TchTensor::new(value.contiguous()));
            }
        }
    }
}

/// Runs `forward` on the tch tensors of `inputs` as one Burn autodiff node whose backward pass
/// is LibTorch's autograd. `untracked` runs instead when no input is tracked (no graph is
/// recorded then). Inputs whose `used` flag is off are placeholders that `forward` does not
/// read (an operation with a fixed number of inputs and optional ones): they get no gradient.
pub(crate) fn with_torch_autograd<C: CheckpointStrategy, const N: usize>(
    inputs: [FloatTensor<Autodiff<LibTorch, C>>; N],
    used: [bool; N],
    forward: impl FnOnce(&[tch::Tensor; N]) -> tch::Tensor,
    untracked: impl FnOnce([TchTensor; N]) -> TchTensor,
) -> FloatTensor<Autodiff<LibTorch, C>> {
    let mut needs_grad = inputs.each_ref().map(|t| t.is_tracked());
    for (needs, used) in needs_grad.iter_mut().zip(used) {
        *needs &= used;
    }
    let nodes = inputs.each_ref().map(|t| t.node());
    let prep = TorchBackward::<N>
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful();
    let primitives = inputs.map(|t| t.into_primitive());
    match prep {
        OpsKind::Tracked(prep) => {
            let leaves: Vec<Option<tch::Tensor>> = primitives
                .iter()
                .zip(needs_grad)
                .map(|(p, grad)| grad.then(|| p.tensor.detach().set_requires_grad(true)))
                .collect();
            let operands: [tch::Tensor; N] = std::array::from_fn(|i| match &leaves[i] {
                Some(leaf) => leaf.shallow_clone(),
                None => primitives[i].tensor.shallow_clone(),
            });
            let output = tch::with_grad(|| forward(&operands));
            // Burn's tensor shares the values but not the graph.
            let values = TchTensor::new(output.detach());
            let result = values.clone();
            let saved = Saved {
                output,
                leaves,
                inputs: primitives.into(),
                values,
            };
            prep.finish(saved, result)
        }
        OpsKind::UnTracked(prep) => prep.finish(untracked(primitives)),
    }
}
