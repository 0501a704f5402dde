//! The chapter's transformer block: self-attention and a feed-forward network, each with a
//! residual connection and layer normalisation.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use dl_core::{Error, Result, validate};

use crate::attention::{AttentionMask, MultiHeadAttention, MultiHeadAttentionConfig};
use crate::dropout::dropout_forward;
use crate::layer_norm::layer_norm_forward;
use crate::linear::linear_forward;

/// Configuration of a [`TransformerBlock`] (the chapter's `TransformerBlock` arguments).
#[derive(Config, Debug)]
pub struct TransformerBlockConfig {
    /// Model width.
    pub d_model: usize,
    /// Attention heads; must divide `d_model`.
    pub n_heads: usize,
    /// Hidden width of the feed-forward network.
    pub d_ff: usize,
    /// Dropout on the attention weights, inside the feed-forward network and on both residual
    /// branches, in training only (the chapter: 0.1).
    #[config(default = 0.1)]
    pub dropout: f64,
    /// `false`: post-norm, the chapter's `x = norm(x + f(x))`; `true`: pre-norm,
    /// `x = x + f(norm(x))` (PyTorch's `norm_first`).
    #[config(default = false)]
    pub norm_first: bool,
    /// LayerNorm epsilon (PyTorch: 1e-5).
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
}

/// The feed-forward network `Linear(d_model, d_ff) → ReLU → Dropout → Linear(d_ff, d_model)`,
/// the chapter's `nn.Sequential`.
///
/// # PyTorch keys (inside the block, prefix `feed_forward.`)
///
/// | key | shape | here |
/// |---|---|---|
/// | `0.weight` | `[d_ff, d_model]` | `linear1.weight`, stored **transposed** (Burn's `Linear`) |
/// | `0.bias` | `[d_ff]` | `linear1.bias` |
/// | `3.weight` | `[d_model, d_ff]` | `linear2.weight`, stored **transposed** |
/// | `3.bias` | `[d_model]` | `linear2.bias` |
///
/// (`1` is the ReLU and `2` the dropout, which have no parameters.)
#[derive(Module, Debug)]
pub struct FeedForward {
    /// `nn.Sequential` index 0: `d_model → d_ff`.
    pub linear1: Linear,
    /// `nn.Sequential` index 2, after the ReLU (index 1).
    pub dropout: Dropout,
    /// `nn.Sequential` index 3: `d_ff → d_model`.
    pub linear2: Linear,
}

impl FeedForward {
    /// `[..., d_model]` → `[..., d_model]`; panics where [`try_forward`](Self::try_forward)
    /// returns an error.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        validate::or_panic(self.try_forward(x))
    }

    /// `[..., d_model]` → `[..., d_model]`, or an error naming the shape when the last
    /// dimension is not `d_model`.
    ///
    /// ```
    /// use burn::tensor::Tensor;
    /// use dl_layers::TransformerBlockConfig;
    ///
    /// let device = dl_core::BackendKind::Flex.device()?;
    /// let block = TransformerBlockConfig::new(8, 2, 16).init(&device)?;
    /// let y = block.feed_forward.try_forward(Tensor::<3>::zeros([2, 3, 8], &device))?;
    /// assert_eq!(y.dims(), [2, 3, 8]);
    /// assert!(block.feed_forward.try_forward(Tensor::<2>::zeros([2, 5], &device)).is_err());
    /// # Ok::<(), dl_core::Error>(())
    /// ```
    pub fn try_forward<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>> {
        let d_model = self.linear1.weight.dims()[0];
        validate::last_dim("feed-forward input", &x.dims(), d_model)?;
        Ok(linear_forward(
            &self.linear2,
            dropout_forward(&self.dropout, relu(linear_forward(&self.linear1, x))),
        ))
    }
}

/// The chapter's `TransformerBlock`, with batch-first attention.
///
/// Post-norm (the chapter, `norm_first = false`):
///
/// ```text
/// x = norm1(x + dropout(attention(x, x, x)))
/// x = norm2(x + dropout(feed_forward(x)))
/// ```
///
/// Pre-norm (`norm_first = true`):
/// `x = x + dropout(attention(norm1(x)))`, then `x = x + dropout(feed_forward(norm2(x)))`.
///
/// Input and output are `[batch, time, d_model]`. The chapter builds
/// `nn.MultiheadAttention(d_model, n_heads, dropout=dropout)` *without* `batch_first=True` and
/// feeds it batch-first tensors, so its attention runs across the batch instead of across
/// time — a bug. This block implements the intended batch-first attention; the PyTorch
/// reference of the tests (`fixtures/gen/layers.py`) uses `batch_first=True`, which does not
/// change any `state_dict` key.
///
/// # PyTorch keys
///
/// | key | shape | here |
/// |---|---|---|
/// | `attention.in_proj_weight` | `[3d, d]` | `attention.in_proj_weight` |
/// | `attention.in_proj_bias` | `[3d]` | `attention.in_proj_bias` |
/// | `attention.out_proj.weight` | `[d, d]` | `attention.out_proj.weight`, **transposed** |
/// | `attention.out_proj.bias` | `[d]` | `attention.out_proj.bias` |
/// | `feed_forward.0.*`, `feed_forward.3.*` | see [`FeedForward`] | `feed_forward.linear1.*`, `feed_forward.linear2.*` |
/// | `norm1.weight`, `norm1.bias` | `[d]` | `norm1.gamma`, `norm1.beta` (Burn's `LayerNorm` names) |
/// | `norm2.weight`, `norm2.bias` | `[d]` | `norm2.gamma`, `norm2.beta` |
///
/// # Initialisation
///
/// As PyTorch initialises the parts: attention as [`MultiHeadAttention`], linear layers
/// `U(±1/√fan_in)`, LayerNorm weight 1 and bias 0.
///
/// ```
/// use burn::tensor::Tensor;
/// use dl_layers::{AttentionMask, TransformerBlockConfig};
///
/// let device = dl_core::BackendKind::Flex.device()?;
/// let block = TransformerBlockConfig::new(16, 4, 64).init(&device)?;
/// let x = Tensor::<3>::zeros([2, 10, 16], &device);
/// assert_eq!(block.forward(x.clone()).dims(), [2, 10, 16]);
/// let (y, weights) = block.forward_with(x, AttentionMask::none(), true);
/// assert_eq!(weights.map(|w| w.dims()), Some([2, 4, 10, 10]));
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Module, Debug)]
pub struct TransformerBlock {
    /// Multi-head self-attention.
    pub attention: MultiHeadAttention,
    /// The position-wise feed-forward network.
    pub feed_forward: FeedForward,
    /// Normalisation around the attention.
    pub norm1: LayerNorm,
    /// Normalisation around the feed-forward network.
    pub norm2: LayerNorm,
    /// Dropout on both residual branches.
    pub dropout: Dropout,
    /// Pre-norm (`true`) or post-norm (`false`).
    pub norm_first: bool,
    /// The epsilon both norms were built with (Burn's `LayerNorm` keeps its own private).
    pub layer_norm_eps: f64,
}

impl TransformerBlockConfig {
    /// Build the block with PyTorch's initialisation.
    ///
    /// Fails when `n_heads` does not divide `d_model`, a size is 0, or `dropout` is not in
    /// `[0, 1)`.
    pub fn init(&self, device: &Device) -> Result<TransformerBlock> {
        validate::positive("transformer block d_ff", self.d_ff)?;
        validate::probability("transformer block dropout", self.dropout)?;
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(Error::invalid(
                "transformer block layer_norm_eps",
                "a finite value > 0",
                self.layer_norm_eps,
            ));
        }
        let attention = MultiHeadAttentionConfig::new(self.d_model, self.n_heads)
            .with_dropout(self.dropout)
            .init(device)?;
        let norm = || {
            LayerNormConfig::new(self.d_model)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        Ok(TransformerBlock {
            attention,
            feed_forward: FeedForward {
                linear1: LinearConfig::new(self.d_model, self.d_ff).init(device),
                dropout: DropoutConfig::new(self.dropout).init(),
                linear2: LinearConfig::new(self.d_ff, self.d_model).init(device),
            },
            norm1: norm(),
            norm2: norm(),
            dropout: DropoutConfig::new(self.dropout).init(),
            norm_first: self.norm_first,
            layer_norm_eps: self.layer_norm_eps,
        })
    }
}

impl TransformerBlock {
    /// Model width.
    pub fn d_model(&self) -> usize {
        self.attention.embed_dim()
    }

    /// `[B, T, d_model]` → `[B, T, d_model]`, without masks (the chapter's `forward`).
    ///
    /// # Panics
    ///
    /// When the last axis is not `d_model` (see [`TransformerBlock::try_forward`]).
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.forward_with(x, AttentionMask::none(), false).0
    }

    /// [`TransformerBlock::forward`], failing when the last axis is not `d_model`.
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        Ok(self.try_forward_with(x, AttentionMask::none(), false)?.0)
    }

    /// The block with attention masks; also returns the per-head attention weights
    /// `[B, n_heads, T, T]` when `need_weights`. A fully masked query row gives NaN, as in
    /// PyTorch.
    ///
    /// # Panics
    ///
    /// When the shapes do not fit (see [`TransformerBlock::try_forward_with`]).
    pub fn forward_with(
        &self,
        x: Tensor<3>,
        mask: AttentionMask,
        need_weights: bool,
    ) -> (Tensor<3>, Option<Tensor<4>>) {
        validate::or_panic(validate::last_dim(
            "transformer block input",
            &x.dims(),
            self.d_model(),
        ));
        self.run(x, |h| self.attention.forward_self(h, mask, need_weights))
    }

    /// [`TransformerBlock::forward_with`], failing when the input or a mask has the wrong
    /// shape or a query row is fully masked.
    pub fn try_forward_with(
        &self,
        x: Tensor<3>,
        mask: AttentionMask,
        need_weights: bool,
    ) -> Result<(Tensor<3>, Option<Tensor<4>>)> {
        validate::last_dim("transformer block input", &x.dims(), self.d_model())?;
        self.attention.check_self(&x, &mask)?;
        Ok(self.forward_with(x, mask, need_weights))
    }

    fn run(
        &self,
        x: Tensor<3>,
        attend: impl FnOnce(Tensor<3>) -> (Tensor<3>, Option<Tensor<4>>),
    ) -> (Tensor<3>, Option<Tensor<4>>) {
        let norm1 = |x: Tensor<3>| layer_norm_forward(&self.norm1, self.layer_norm_eps, x);
        let norm2 = |x: Tensor<3>| layer_norm_forward(&self.norm2, self.layer_norm_eps, x);
        if self.norm_first {
            let (a, w) = attend(norm1(x.clone()));
            let x = x + dropout_forward(&self.dropout, a);
            let f = self.feed_forward.forward(norm2(x.clone()));
            (x + dropout_forward(&self.dropout, f), w)
        } else {
            let (a, w) = attend(x.clone());
            let x = norm1(x + dropout_forward(&self.dropout, a));
            let f = self.feed_forward.forward(x.clone());
            (norm2(x + dropout_forward(&self.dropout, f)), w)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_util::{assert_all, assert_uniform, values};
    use burn::tensor::{Bool, Distribution};
    use dl_core::BackendKind;

    #[test]
    fn init_follows_pytorch() {
        let device = BackendKind::Flex.device().unwrap();
        dl_core::seed_device(&device, 31);
        let block = TransformerBlockConfig::new(32, 4, 128)
            .init(&device)
            .unwrap();
        assert_uniform(
            &values(block.feed_forward.linear1.weight.val()),
            1.0 / 32f64.sqrt(),
            "feed_forward.0.weight",
        );
        assert_uniform(
            &values(block.feed_forward.linear2.weight.val()),
            1.0 / 128f64.sqrt(),
            "feed_forward.3.weight",
        );
        assert_all(&values(block.norm1.gamma.val()), 1.0, "norm1.weight");
        assert_all(
            &values(block.norm2.beta.as_ref().unwrap().val()),
            0.0,
            "norm2.bias",
        );
        // The chapter's TransformerBlock(32, 4, 128) has
        // 4·32·32 + 4·32 (attention) + 32·128 + 128 + 128·32 + 32 (ff) + 4·32 (norms).
        assert_eq!(
            block.num_params(),
            4 * 32 * 32 + 4 * 32 + 32 * 128 + 128 + 128 * 32 + 32 + 4 * 32
        );
    }

    #[test]
    fn post_norm_output_is_normalised() {
        // With LayerNorm weight 1 and bias 0, every output row has mean 0 and variance ≈ 1.
        let device = BackendKind::Flex.device().unwrap();
        dl_core::seed_device(&device, 32);
        let block = TransformerBlockConfig::new(8, 2, 16).init(&device).unwrap();
        let x = Tensor::<3>::random([2, 3, 8], Distribution::Normal(0.0, 1.0), &device);
        let y = block.forward(x);
        for row in values(y).chunks(8) {
            let mean = row.iter().sum::<f64>() / 8.0;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 8.0;
            assert!(
                mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3,
                "{mean} {var}"
            );
        }
    }

    #[test]
    fn pre_norm_with_zero_sublayers_is_identity() {
        // Pre-norm: x + f(norm(x)); with zero output projections both branches add 0.
        let device = BackendKind::Flex.device().unwrap();
        let mut block = TransformerBlockConfig::new(4, 2, 8)
            .with_norm_first(true)
            .init(&device)
            .unwrap();
        let zero = |l: &mut Linear| {
            l.weight = burn::module::Param::from_tensor(l.weight.val().zeros_like());
            l.bias = l
                .bias
                .take()
                .map(|b| burn::module::Param::from_tensor(b.val().zeros_like()));
        };
        zero(&mut block.attention.out_proj);
        zero(&mut block.feed_forward.linear2);
        let x = Tensor::<3>::random([1, 3, 4], Distribution::Normal(0.0, 1.0), &device);
        dl_core::assert_tensor_close!(block.forward(x.clone()), x, 0.0, 0.0);
    }

    #[test]
    fn dropout_inactive_on_plain_device_and_after_set_training() {
        let device = BackendKind::Flex.device().unwrap();
        let block = TransformerBlockConfig::new(8, 2, 16)
            .with_dropout(0.5)
            .init(&device)
            .unwrap();
        let x = Tensor::<3>::random([2, 3, 8], Distribution::Normal(0.0, 1.0), &device);
        block
            .forward(x.clone())
            .into_data()
            .assert_eq(&block.forward(x.clone()).into_data(), true);
        let ad = BackendKind::Flex.autodiff_device().unwrap();
        let train = block.clone().to_device(&ad).train();
        let x_ad = x.to_device(&ad);
        assert_ne!(
            train.forward(x_ad.clone()).into_data(),
            train.forward(x_ad.clone()).into_data(),
            "dropout should be active in autodiff training"
        );
        let eval = crate::set_training(train, false);
        eval.forward(x_ad.clone())
            .into_data()
            .assert_eq(&eval.forward(x_ad).into_data(), true);
    }

    #[test]
    fn errors() {
        let device = BackendKind::Flex.device().unwrap();
        assert!(TransformerBlockConfig::new(8, 3, 16).init(&device).is_err());
        assert!(TransformerBlockConfig::new(8, 2, 0).init(&device).is_err());
        assert!(
            TransformerBlockConfig::new(8, 2, 16)
                .with_dropout(1.0)
                .init(&device)
                .is_err()
        );
        let block = TransformerBlockConfig::new(8, 2, 16).init(&device).unwrap();
        let err = block
            .try_forward_with(
                Tensor::zeros([1, 2, 4], &device),
                AttentionMask::none(),
                false,
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape mismatch for transformer block input: expected [1, 2, 8], got [1, 2, 4]"
        );
        let padding = Tensor::<2, Bool>::from_data([[true, true]], &device);
        let err = block
            .try_forward_with(
                Tensor::zeros([1, 2, 8], &device),
                AttentionMask::none().with_key_padding(padding),
                false,
            )
            .unwrap_err();
        assert!(err.to_string().contains("fully masked"), "{err}");
    }
}
