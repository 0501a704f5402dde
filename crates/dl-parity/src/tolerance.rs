//! Every tolerance of the parity checks, in one place, with the reason for each.

use dl_core::Tolerance;

/// Which quantity a check compares; each has its own tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Eval-mode logits.
    Logits,
    /// Mean cross-entropy of the train-mode (dropout 0) logits.
    Loss,
    /// The gradient of that loss for every parameter.
    Grads,
    /// Parameters after 10 Adam steps (lr 0.01).
    Adam10,
    /// Parameters after 10 SGD steps (lr 0.05, momentum 0.9).
    Sgd10,
    /// Per-head attention weights of every transformer block.
    Attention,
    /// The from-scratch network's outputs (probabilities).
    Output,
}

impl Check {
    /// The name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Check::Logits => "logits",
            Check::Loss => "loss",
            Check::Grads => "grads",
            Check::Adam10 => "adam10",
            Check::Sgd10 => "sgd10",
            Check::Attention => "attention",
            Check::Output => "output",
        }
    }

    /// The tolerance against PyTorch's numbers.
    ///
    /// - logits, loss, outputs, attention: rtol 1e-5, atol 1e-5: f32 matmul and convolution
    ///   sum in a different order in PyTorch and in each backend; values near zero need the
    ///   absolute part.
    /// - gradients: rtol 1e-4, atol 1e-5: one more chain of f32 products than the forward
    ///   pass, and some gradients are mathematically zero (the key part of attention's
    ///   `in_proj_bias`) and come out as rounding noise.
    /// - after 10 optimizer steps: rtol 1e-5, atol 1e-6: steps are small next to the weights,
    ///   so gradient differences barely show (measured: all models pass this tightly).
    pub fn tolerance(self) -> Tolerance {
        match self {
            Check::Logits | Check::Loss | Check::Output | Check::Attention => {
                Tolerance::new(1e-5, 1e-5)
            }
            Check::Grads => Tolerance::new(1e-4, 1e-5),
            Check::Adam10 | Check::Sgd10 => Tolerance::new(1e-5, 1e-6),
        }
    }

    /// The tolerance between two backends of dl-rs (against the flex result): the same
    /// as against PyTorch, since both are f32 computations with their own summation order.
    pub fn cross_backend_tolerance(self) -> Tolerance {
        self.tolerance()
    }
}
