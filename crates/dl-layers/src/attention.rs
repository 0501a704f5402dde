//! Multi-head attention with PyTorch's packed input projection.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Tensor};
use dl_core::{Error, Result, validate};

use crate::dropout::dropout_forward;
use crate::linear::{linear, linear_forward};

/// Configuration of a [`MultiHeadAttention`] (the arguments of `nn.MultiheadAttention`).
#[derive(Config, Debug)]
pub struct MultiHeadAttentionConfig {
    /// Model width `E`.
    pub embed_dim: usize,
    /// Number of heads; must divide `embed_dim`.
    pub num_heads: usize,
    /// Dropout on the attention weights, in training only (PyTorch: 0).
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Whether the input and output projections have biases (PyTorch: yes).
    #[config(default = true)]
    pub bias: bool,
}

/// Which query–key pairs may not attend. `true` means *masked*, as in PyTorch's boolean masks.
///
/// The three parts combine with "or". A query row whose keys are all masked has no defined
/// attention: PyTorch's `nn.MultiheadAttention` returns NaN for it (its softmax over an
/// all-`−inf` row), and so does [`MultiHeadAttention::forward`]; the `try_` methods refuse it
/// with an error instead.
///
/// ```
/// use burn::tensor::{Bool, Tensor};
/// use dl_layers::AttentionMask;
///
/// let device = dl_core::BackendKind::Flex.device()?;
/// // Batch of 2 sequences of 3 keys; the second has its last key padded.
/// let padding = Tensor::<2, Bool>::from_data([[false, false, false], [false, false, true]], &device);
/// let mask = AttentionMask::none().with_key_padding(padding).with_causal(true);
/// assert!(mask.causal);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct AttentionMask {
    /// `[batch, S]`: key positions to ignore (padding), PyTorch's `key_padding_mask`.
    pub key_padding_mask: Option<Tensor<2, Bool>>,
    /// `[L, S]`: pairs (query, key) that may not attend, PyTorch's boolean `attn_mask`.
    pub attn_mask: Option<Tensor<2, Bool>>,
    /// Mask every key after the query's own position (`j > i`), as
    /// `torch.triu(ones(L, S), diagonal=1)`.
    pub causal: bool,
}

impl AttentionMask {
    /// No masking.
    pub fn none() -> Self {
        Self::default()
    }

    /// With a key padding mask `[batch, S]` (`true` = padding, ignored).
    pub fn with_key_padding(mut self, mask: Tensor<2, Bool>) -> Self {
        self.key_padding_mask = Some(mask);
        self
    }

    /// With an attention mask `[L, S]` (`true` = may not attend).
    pub fn with_attn_mask(mut self, mask: Tensor<2, Bool>) -> Self {
        self.attn_mask = Some(mask);
        self
    }

    /// With or without the causal mask.
    pub fn with_causal(mut self, causal: bool) -> Self {
        self.causal = causal;
        self
    }

    fn check(&self, batch: usize, l: usize, s: usize) -> Result<()> {
        if let Some(m) = &self.key_padding_mask {
            validate::shape("key_padding_mask", &m.dims(), &[batch, s])?;
        }
        if let Some(m) = &self.attn_mask {
            validate::shape("attn_mask", &m.dims(), &[l, s])?;
        }
        Ok(())
    }

    /// The combined mask `[batch or 1, 1, L, S]`, or `None` when nothing is masked.
    /// True when no query row can have all its keys masked: no padding and no custom mask
    /// (a causal mask always leaves key 0 visible).
    fn never_fully_masks(&self) -> bool {
        self.key_padding_mask.is_none() && self.attn_mask.is_none()
    }

    fn combined(
        &self,
        batch: usize,
        l: usize,
        s: usize,
        device: &Device,
    ) -> Option<Tensor<4, Bool>> {
        let mut parts: Vec<Tensor<4, Bool>> = Vec::new();
        if let Some(m) = &self.key_padding_mask {
            parts.push(m.clone().reshape([batch, 1, 1, s]).expand([batch, 1, l, s]));
        }
        if let Some(m) = &self.attn_mask {
            parts.push(m.clone().reshape([1, 1, l, s]));
        }
        if self.causal {
            // tril_mask marks everything above the main diagonal: key j > query i.
            parts.push(Tensor::<2, Bool>::tril_mask([l, s], 0, device).reshape([1, 1, l, s]));
        }
        let b = if self.key_padding_mask.is_some() {
            batch
        } else {
            1
        };
        parts
            .into_iter()
            .map(|p| p.expand([b, 1, l, s]))
            .reduce(|a, p| a.bool_or(p))
    }
}

/// `torch.nn.MultiheadAttention(embed_dim, num_heads, dropout, bias, batch_first=True)`.
///
/// Inputs are batch first: query `[B, L, E]`, key and value `[B, S, E]`. With
/// `head_dim = E / num_heads`, each head attends with
/// `softmax((q / √head_dim) kᵀ + mask) v`, the heads are concatenated and projected by
/// `out_proj`. Masked scores are `−inf` before the softmax (see [`AttentionMask`]).
///
/// The attention weights `[B, num_heads, L, S]` are returned per head (PyTorch's
/// `average_attn_weights=False`) when `need_weights` is true. As in PyTorch they are the
/// weights after dropout (identical to the softmax outside training).
///
/// Outside autodiff, with `need_weights` false and no padding or custom mask (a causal mask
/// only with as many queries as keys), the heads go through Burn's fused attention operator
/// (`burn::tensor::module::attention`), except on Flex, where matmul and dl-kernels' SIMD
/// softmax are faster than its fused kernel; otherwise through matmul, mask and softmax. On
/// Flex, unmasked self-attention ([`MultiHeadAttention::forward_self`]) at inference without
/// weights goes through `dl_kernels::self_attention_heads` instead: one sequence and head at a
/// time, its scores in cache, no head copies. All of them agree within float rounding.
///
/// # PyTorch keys
///
/// | key | shape | here |
/// |---|---|---|
/// | `in_proj_weight` | `[3E, E]` (rows: q, k, v) | `in_proj_weight`, same layout |
/// | `in_proj_bias` | `[3E]` | `in_proj_bias` (absent when `bias` is false) |
/// | `out_proj.weight` | `[E, E]` | `out_proj.weight`, stored **transposed** (Burn's `Linear`) |
/// | `out_proj.bias` | `[E]` | `out_proj.bias` (absent when `bias` is false) |
///
/// # Initialisation
///
/// PyTorch's `_reset_parameters`: `in_proj_weight` Xavier-uniform,
/// `U(±√(6 / (E + 3E)))`; `in_proj_bias` and `out_proj.bias` 0; `out_proj.weight`
/// `nn.Linear`'s default `U(±1/√E)`.
///
/// # Training
///
/// The attention dropout is a Burn [`Dropout`]: active only on an autodiff device with its
/// training flag on ([`crate::set_training`]).
///
/// ```
/// use burn::tensor::Tensor;
/// use dl_layers::{AttentionMask, MultiHeadAttentionConfig};
///
/// let device = dl_core::BackendKind::Flex.device()?;
/// let mha = MultiHeadAttentionConfig::new(16, 4).init(&device)?;
/// let x = Tensor::<3>::ones([2, 5, 16], &device);
/// let (out, weights) = mha.forward_self(x, AttentionMask::none().with_causal(true), true);
/// assert_eq!(out.dims(), [2, 5, 16]);
/// assert_eq!(weights.map(|w| w.dims()), Some([2, 4, 5, 5]));
/// assert!(MultiHeadAttentionConfig::new(16, 3).init(&device).is_err());
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Module, Debug)]
pub struct MultiHeadAttention {
    /// Packed query, key and value projection weights `[3E, E]`, PyTorch layout.
    pub in_proj_weight: Param<Tensor<2>>,
    /// Packed projection biases `[3E]`.
    pub in_proj_bias: Option<Param<Tensor<1>>>,
    /// Output projection (Burn `Linear`: weight stored `[E, E]` transposed).
    pub out_proj: Linear,
    /// Dropout on the attention weights (training only).
    pub dropout: Dropout,
    /// Number of heads.
    pub num_heads: usize,
}

impl MultiHeadAttentionConfig {
    /// Build the layer with PyTorch's initialisation.
    ///
    /// Fails when `num_heads` does not divide `embed_dim`, a size is 0, or `dropout` is not in
    /// `[0, 1)`.
    pub fn init(&self, device: &Device) -> Result<MultiHeadAttention> {
        let e = self.embed_dim;
        validate::positive("attention embed_dim", e)?;
        validate::positive("attention num_heads", self.num_heads)?;
        if !e.is_multiple_of(self.num_heads) {
            return Err(Error::invalid(
                "attention num_heads",
                format!("a divisor of embed_dim {e}"),
                self.num_heads,
            ));
        }
        validate::probability("attention dropout", self.dropout)?;
        let in_proj_weight = Initializer::XavierUniform { gain: 1.0 }.init_with(
            [3 * e, e],
            Some(e),
            Some(3 * e),
            device,
        );
        let in_proj_bias = self.bias.then(|| Initializer::Zeros.init([3 * e], device));
        let mut out_proj = LinearConfig::new(e, e).with_bias(self.bias).init(device);
        if self.bias {
            out_proj.bias = Some(Initializer::Zeros.init([e], device));
        }
        Ok(MultiHeadAttention {
            in_proj_weight,
            in_proj_bias,
            out_proj,
            dropout: DropoutConfig::new(self.dropout).init(),
            num_heads: self.num_heads,
        })
    }
}

impl MultiHeadAttention {
    /// Model width `E`.
    pub fn embed_dim(&self) -> usize {
        self.in_proj_weight.shape().dims::<2>()[1]
    }

    /// Width of one head, `E / num_heads`.
    pub fn head_dim(&self) -> usize {
        self.embed_dim() / self.num_heads
    }

    /// Attention of `query` `[B, L, E]` over `key`, `value` `[B, S, E]`.
    ///
    /// Returns the output `[B, L, E]` and, when `need_weights`, the per-head weights
    /// `[B, num_heads, L, S]`. A fully masked query row gives NaN, as in PyTorch.
    ///
    /// # Panics
    ///
    /// When the shapes do not fit (see [`MultiHeadAttention::try_forward`]).
    pub fn forward(
        &self,
        query: Tensor<3>,
        key: Tensor<3>,
        value: Tensor<3>,
        mask: AttentionMask,
        need_weights: bool,
    ) -> (Tensor<3>, Option<Tensor<4>>) {
        validate::or_panic(self.check_shapes(&query, &key, &value, &mask));
        if let Some(out) = self.native_inference(&query, &key, &value, &mask, need_weights) {
            return (out, None);
        }
        let (q, k, v) = self.project(query, key, value);
        self.attend(q, k, v, &mask, need_weights)
    }

    /// [`MultiHeadAttention::forward`], failing when the shapes do not fit or when a query
    /// row is fully masked (this reads the combined mask back to the host once).
    pub fn try_forward(
        &self,
        query: Tensor<3>,
        key: Tensor<3>,
        value: Tensor<3>,
        mask: AttentionMask,
        need_weights: bool,
    ) -> Result<(Tensor<3>, Option<Tensor<4>>)> {
        self.check_shapes(&query, &key, &value, &mask)?;
        let [b, l, _] = query.dims();
        let s = key.dims()[1];
        check_fully_masked(&mask, b, l, s, &query.device())?;
        if let Some(out) = self.native_inference(&query, &key, &value, &mask, need_weights) {
            return Ok((out, None));
        }
        let (q, k, v) = self.project(query, key, value);
        Ok(self.attend(q, k, v, &mask, need_weights))
    }

    /// Self-attention of `x` `[B, T, E]`: query, key and value are all `x`, projected with a
    /// single `[B·T, E] × [E, 3E]` product.
    ///
    /// # Panics
    ///
    /// When the shapes do not fit (see [`MultiHeadAttention::try_forward_self`]).
    pub fn forward_self(
        &self,
        x: Tensor<3>,
        mask: AttentionMask,
        need_weights: bool,
    ) -> (Tensor<3>, Option<Tensor<4>>) {
        validate::or_panic(self.check_shapes(&x, &x, &x, &mask));
        if let Some(out) = self.self_inference(&x, &mask, need_weights) {
            return (out, None);
        }
        let (q, k, v) = self.project_self(x);
        self.attend(q, k, v, &mask, need_weights)
    }

    /// [`MultiHeadAttention::forward_self`], failing when the shapes do not fit or a query row
    /// is fully masked.
    pub fn try_forward_self(
        &self,
        x: Tensor<3>,
        mask: AttentionMask,
        need_weights: bool,
    ) -> Result<(Tensor<3>, Option<Tensor<4>>)> {
        self.check_self(&x, &mask)?;
        if let Some(out) = self.self_inference(&x, &mask, need_weights) {
            return Ok((out, None));
        }
        let (q, k, v) = self.project_self(x);
        Ok(self.attend(q, k, v, &mask, need_weights))
    }

    /// The checks of [`MultiHeadAttention::try_forward_self`].
    pub(crate) fn check_self(&self, x: &Tensor<3>, mask: &AttentionMask) -> Result<()> {
        self.check_shapes(x, x, x, mask)?;
        let [b, t, _] = x.dims();
        check_fully_masked(mask, b, t, t, &x.device())
    }

    fn check_shapes(
        &self,
        query: &Tensor<3>,
        key: &Tensor<3>,
        value: &Tensor<3>,
        mask: &AttentionMask,
    ) -> Result<()> {
        let e = self.embed_dim();
        let [b, l, _] = query.dims();
        let [_, s, _] = key.dims();
        validate::last_dim("attention query", &query.dims(), e)?;
        validate::shape("attention key", &key.dims(), &[b, s, e])?;
        validate::shape("attention value", &value.dims(), &[b, s, e])?;
        if b == 0 || l == 0 || s == 0 {
            return Err(Error::invalid(
                "attention input",
                "at least one sequence, query and key",
                format!("query {:?}, key {:?}", query.dims(), key.dims()),
            ));
        }
        mask.check(b, l, s)
    }

    /// The packed weight's rows `[part·E, (part+1)·E)`, transposed to `[E, E]` for `linear`.
    fn part(&self, part: usize) -> (Tensor<2>, Option<Tensor<1>>) {
        let e = self.embed_dim();
        let w = self.in_proj_weight.val().narrow(0, part * e, e).transpose();
        let b = self
            .in_proj_bias
            .as_ref()
            .map(|b| b.val().narrow(0, part * e, e));
        (w, b)
    }

    /// Unmasked self-attention at inference without weights through a whole-layer kernel where
    /// the device has one: LibTorch's (see [`Self::native_inference`]), or on Flex the packed
    /// projection, `dl_kernels::self_attention_heads` (each sequence's and head's scores kept
    /// in cache instead of a `[B, h, T, T]` tensor and the strided head copies) and `out_proj`.
    fn self_inference(
        &self,
        x: &Tensor<3>,
        mask: &AttentionMask,
        need_weights: bool,
    ) -> Option<Tensor<3>> {
        if let Some(out) = self.native_inference(x, x, x, mask, need_weights) {
            return Some(out);
        }
        if need_weights
            || !mask.never_fully_masks()
            || mask.causal
            || !dl_kernels::has_attention_heads(&x.device(), x.dtype())
        {
            return None;
        }
        let packed = linear(
            x.clone(),
            self.in_proj_weight.val().transpose(),
            self.in_proj_bias.as_ref().map(Param::val),
        );
        let heads = dl_kernels::self_attention_heads(&packed, self.num_heads)?;
        Some(linear_forward(&self.out_proj, heads))
    }

    /// Inference through the backend's own whole-layer attention kernel, where there is one and
    /// it computes exactly this: LibTorch's `at::_native_multi_head_attention` (PyTorch's fused
    /// inference path, `dl_kernels::torch_multi_head_attention`), without attention weights,
    /// without any mask (padding, causal or custom), with both projection biases, with query,
    /// key and value of one shape (the kernel's condition), off autodiff. `None` everywhere
    /// else, and always without the `tch` feature.
    #[cfg_attr(not(feature = "tch"), allow(unused_variables))]
    fn native_inference(
        &self,
        query: &Tensor<3>,
        key: &Tensor<3>,
        value: &Tensor<3>,
        mask: &AttentionMask,
        need_weights: bool,
    ) -> Option<Tensor<3>> {
        #[cfg(feature = "tch")]
        if !need_weights
            && mask.never_fully_masks()
            && !mask.causal
            && query.dims() == key.dims()
            && key.dims() == value.dims()
            && let (Some(in_bias), Some(out_bias)) = (&self.in_proj_bias, &self.out_proj.bias)
        {
            let (in_weight, in_bias) = (self.in_proj_weight.val(), in_bias.val());
            // Burn's Linear stores `[in, out]`; the kernel takes PyTorch's `[out, in]`.
            let (out_weight, out_bias) = (self.out_proj.weight.val().transpose(), out_bias.val());
            let weights = dl_kernels::TorchAttentionWeights {
                in_weight: &in_weight,
                in_bias: &in_bias,
                out_weight: &out_weight,
                out_bias: &out_bias,
            };
            return dl_kernels::torch_multi_head_attention(
                query,
                key,
                value,
                weights,
                self.num_heads,
            );
        }
        None
    }

    fn project(
        &self,
        query: Tensor<3>,
        key: Tensor<3>,
        value: Tensor<3>,
    ) -> (Tensor<3>, Tensor<3>, Tensor<3>) {
        let proj = |x: Tensor<3>, part: usize| {
            let (w, b) = self.part(part);
            linear(x, w, b)
        };
        (proj(query, 0), proj(key, 1), proj(value, 2))
    }

    fn project_self(&self, x: Tensor<3>) -> (Tensor<3>, Tensor<3>, Tensor<3>) {
        let e = self.embed_dim();
        let packed = linear(
            x,
            self.in_proj_weight.val().transpose(),
            self.in_proj_bias.as_ref().map(Param::val),
        ); // [B, T, 3E]
        (
            packed.clone().narrow(2, 0, e),
            packed.clone().narrow(2, e, e),
            packed.narrow(2, 2 * e, e),
        )
    }

    /// Scaled dot-product attention over projected q `[B, L, E]`, k, v `[B, S, E]`.
    fn attend(
        &self,
        q: Tensor<3>,
        k: Tensor<3>,
        v: Tensor<3>,
        mask: &AttentionMask,
        need_weights: bool,
    ) -> (Tensor<3>, Option<Tensor<4>>) {
        let [b, l, e] = q.dims();
        let s = k.dims()[1];
        let (h, hd) = (self.num_heads, self.head_dim());
        // PyTorch scales q before the product: q * sqrt(1 / head_dim).
        let scale = (1.0 / hd as f64).sqrt();
        let split = |x: Tensor<3>, len: usize| x.reshape([b, len, h, hd]).swap_dims(1, 2);
        if !need_weights
            && mask.never_fully_masks()
            && (!mask.causal || l == s)
            && !q.device().is_autodiff()
            && !dl_kernels::has_softmax(&q.device(), q.dtype())
        {
            // Inference without weights: the backend's fused attention (one kernel, no
            // materialised score tensor). Not on Flex, whose fused kernel computes the
            // head-dim dot products and `expf` one value at a time: there the products and
            // dl-kernels' SIMD softmax below were 1.8x faster at batch 1 and 1.4x at batch 64
            // (Transformer inference, one thread). Not on an autodiff device, where Burn would
            // decompose it anyway and dropout may apply; not with padding or custom masks,
            // where a fully masked row must give PyTorch's NaN and the fused kernels give 0.
            // The causal mask goes as `is_causal`, never as a boolean mask: burn-tch 0.22.1
            // hands Burn's mask (true = hidden) to PyTorch's SDPA, which reads true as
            // visible. Only for L = S, where every backend's `is_causal` is PyTorch's
            // (flex aligns it bottom-right when L ≠ S, PyTorch top-left).
            let options = AttentionModuleOptions {
                scale: Some(scale),
                is_causal: mask.causal,
                ..AttentionModuleOptions::default()
            };
            let out = attention(split(q, l), split(k, s), split(v, s), None, None, options);
            let out = out.swap_dims(1, 2).reshape([b, l, e]);
            return (linear_forward(&self.out_proj, out), None);
        }
        let q = split(q * scale, l);
        let k = split(k, s);
        let v = split(v, s);
        let mut scores = q.matmul(k.swap_dims(2, 3)); // [B, h, L, S]
        if let Some(m) = mask.combined(b, l, s, &scores.device()) {
            scores = scores.mask_fill(m.expand([b, h, l, s]), f32::NEG_INFINITY);
        }
        let weights = dropout_forward(&self.dropout, softmax_last(scores));
        let out = weights.clone().matmul(v).swap_dims(1, 2).reshape([b, l, e]);
        (
            linear_forward(&self.out_proj, out),
            need_weights.then_some(weights),
        )
    }
}

/// `softmax(scores, 3)`; on Flex through dl-kernels' softmax, whose backward is one pass
/// instead of Burn's decomposition (the same values to f32 rounding).
fn softmax_last(scores: Tensor<4>) -> Tensor<4> {
    dl_kernels::softmax_last(&scores).unwrap_or_else(|| softmax(scores, 3))
}

/// Fail when some query row of the combined mask has every key masked.
fn check_fully_masked(
    mask: &AttentionMask,
    batch: usize,
    l: usize,
    s: usize,
    device: &Device,
) -> Result<()> {
    let Some(combined) = mask.combined(batch, l, s, device) else {
        return Ok(());
    };
    let b = combined.dims()[0];
    let rows = combined.all_dim(3).reshape([b * l]).into_data();
    let first = rows.iter::<bool>().position(|full| full);
    match first {
        None => Ok(()),
        Some(i) => Err(Error::invalid(
            "attention mask",
            "every query to see at least one key (PyTorch returns NaN for a fully masked row)",
            format!("batch {}, query {} fully masked", i / l, i % l),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_util::{assert_all, assert_uniform, values};
    use burn::tensor::Distribution;
    use dl_core::BackendKind;

    fn rand3(shape: [usize; 3], device: &Device) -> Tensor<3> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
    }

    #[test]
    fn init_follows_pytorch() {
        let device = BackendKind::Flex.device().unwrap();
        dl_core::seed_device(&device, 21);
        let mha = MultiHeadAttentionConfig::new(64, 8).init(&device).unwrap();
        let xavier = (6.0f64 / (64.0 + 192.0)).sqrt();
        assert_uniform(&values(mha.in_proj_weight.val()), xavier, "in_proj_weight");
        assert_uniform(
            &values(mha.out_proj.weight.val()),
            1.0 / 8.0,
            "out_proj.weight",
        );
        assert_all(
            &values(mha.in_proj_bias.as_ref().unwrap().val()),
            0.0,
            "in_proj_bias",
        );
        assert_all(
            &values(mha.out_proj.bias.as_ref().unwrap().val()),
            0.0,
            "out_proj.bias",
        );
        // nn.MultiheadAttention(64, 8): 3·64·64 + 3·64 + 64·64 + 64 parameters.
        assert_eq!(mha.num_params(), 3 * 64 * 64 + 3 * 64 + 64 * 64 + 64);
        let no_bias = MultiHeadAttentionConfig::new(64, 8)
            .with_bias(false)
            .init(&device)
            .unwrap();
        assert_eq!(no_bias.num_params(), 4 * 64 * 64);
    }

    #[test]
    fn weights_are_distributions_and_respect_masks() {
        let device = BackendKind::Flex.device().unwrap();
        dl_core::seed_device(&device, 22);
        let mha = MultiHeadAttentionConfig::new(8, 2).init(&device).unwrap();
        let x = rand3([2, 4, 8], &device);
        let padding = Tensor::<2, Bool>::from_data(
            [[false, false, false, false], [false, false, true, true]],
            &device,
        );
        let mask = AttentionMask::none()
            .with_key_padding(padding)
            .with_causal(true);
        let (_, w) = mha.forward_self(x, mask, true);
        let w = w.unwrap();
        assert_eq!(w.dims(), [2, 2, 4, 4]);
        let sums = values(w.clone().sum_dim(3));
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
        let w = values(w);
        let at = |b: usize, h: usize, i: usize, j: usize| w[((b * 2 + h) * 4 + i) * 4 + j];
        for b in 0..2 {
            for h in 0..2 {
                for i in 0..4 {
                    for j in 0..4 {
                        let masked = j > i || (b == 1 && j >= 2);
                        if masked {
                            assert_eq!(at(b, h, i, j), 0.0, "b{b} h{h} q{i} k{j}");
                        } else {
                            assert!(at(b, h, i, j) > 0.0, "b{b} h{h} q{i} k{j}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn self_attention_path_equals_the_general_path() {
        let device = BackendKind::Flex.device().unwrap();
        dl_core::seed_device(&device, 23);
        let mha = MultiHeadAttentionConfig::new(6, 3).init(&device).unwrap();
        let x = rand3([2, 5, 6], &device);
        let (a, wa) = mha.forward_self(x.clone(), AttentionMask::none(), true);
        let (b, wb) = mha.forward(x.clone(), x.clone(), x, AttentionMask::none(), true);
        dl_core::assert_tensor_close!(a, b, 1e-6, 1e-6);
        dl_core::assert_tensor_close!(wa.unwrap(), wb.unwrap(), 1e-6, 1e-6);
    }

    #[test]
    fn cross_attention_weighs_the_values_by_the_keys() {
        let device = BackendKind::Flex.device().unwrap();
        let mha = MultiHeadAttentionConfig::new(8, 4).init(&device).unwrap();
        let (query, key, value) = (
            rand3([3, 2, 8], &device),
            rand3([3, 6, 8], &device),
            rand3([3, 6, 8], &device),
        );
        let attend = |k: Tensor<3>, v: Tensor<3>| {
            let (out, w) = mha.forward(query.clone(), k, v, AttentionMask::none(), true);
            (out, w.unwrap())
        };
        let (out, w) = attend(key.clone(), value.clone());
        assert_eq!(out.dims(), [3, 2, 8]);
        assert_eq!(w.dims(), [3, 4, 2, 6]);
        let sums = values(w.clone().sum_dim(3));
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
        assert!(
            mha.forward(
                query.clone(),
                key.clone(),
                value.clone(),
                AttentionMask::none(),
                false
            )
            .1
            .is_none()
        );
        // Reordering the key/value pairs together reorders the weights and leaves the output.
        let (flipped, w_flipped) = attend(key.clone().flip([1]), value.clone().flip([1]));
        dl_core::assert_tensor_close!(flipped, out.clone(), 1e-5, 1e-6);
        dl_core::assert_tensor_close!(w_flipped.flip([3]), w, 1e-6, 1e-7);
        // Six equal keys: every weight is 1/6, and (the projections being affine) the output
        // is that of the values' mean at every position.
        let same_keys = key.narrow(1, 0, 1).repeat_dim(1, 6);
        let (uniform, w_uniform) = attend(same_keys.clone(), value.clone());
        assert!(
            values(w_uniform)
                .iter()
                .all(|w| (w - 1.0 / 6.0).abs() < 1e-6),
            "weights of equal keys are not uniform"
        );
        let mean = value.clone().mean_dim(1).repeat_dim(1, 6);
        let (of_mean, _) = attend(same_keys, mean);
        dl_core::assert_tensor_close!(uniform.clone(), of_mean, 1e-5, 1e-6);
        // ... and differs from the output for the keys given, which weigh the values unequally.
        let difference = (uniform - out).abs().max().into_scalar::<f32>();
        assert!(difference > 1e-3, "keys ignored ({difference})");
    }

    #[test]
    fn fully_masked_row_is_nan_like_pytorch_or_an_error() {
        let device = BackendKind::Flex.device().unwrap();
        let mha = MultiHeadAttentionConfig::new(4, 1).init(&device).unwrap();
        let x = rand3([2, 3, 4], &device);
        let padding =
            Tensor::<2, Bool>::from_data([[false, true, true], [true, true, true]], &device);
        let mask = AttentionMask::none().with_key_padding(padding);
        // PyTorch 2.9 (need_weights=True, and the eval fast path): NaN for batch 1.
        let (out, _) = mha.forward_self(x.clone(), mask.clone(), false);
        let out = values(out);
        assert!(out[..12].iter().all(|v| v.is_finite()));
        assert!(out[12..].iter().all(|v| v.is_nan()));
        let err = mha.try_forward_self(x.clone(), mask, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid attention mask: expected every query to see at least one key (PyTorch \
             returns NaN for a fully masked row), got batch 1, query 0 fully masked"
        );
        // Causal plus padding of the first key masks query 0 of that batch entirely.
        let padding =
            Tensor::<2, Bool>::from_data([[false, false, false], [true, false, false]], &device);
        let mask = AttentionMask::none()
            .with_key_padding(padding)
            .with_causal(true);
        let err = mha.try_forward_self(x, mask, false).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("got batch 1, query 0 fully masked"),
            "{err}"
        );
    }

    #[test]
    fn shape_and_config_errors() {
        let device = BackendKind::Flex.device().unwrap();
        let err = MultiHeadAttentionConfig::new(10, 4)
            .init(&device)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid attention num_heads: expected a divisor of embed_dim 10, got 4"
        );
        assert!(
            MultiHeadAttentionConfig::new(8, 2)
                .with_dropout(-0.1)
                .init(&device)
                .is_err()
        );
        let mha = MultiHeadAttentionConfig::new(8, 2).init(&device).unwrap();
        let err = mha
            .try_forward_self(rand3([2, 3, 6], &device), AttentionMask::none(), false)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape mismatch for attention query: expected [2, 3, 8], got [2, 3, 6]"
        );
        let padding = Tensor::<2, Bool>::from_data([[false, false]], &device);
        let err = mha
            .try_forward_self(
                rand3([2, 3, 8], &device),
                AttentionMask::none().with_key_padding(padding),
                false,
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape mismatch for key_padding_mask: expected [2, 3], got [1, 2]"
        );
        let err = mha
            .try_forward(
                rand3([2, 3, 8], &device),
                rand3([2, 4, 8], &device),
                rand3([2, 5, 8], &device),
                AttentionMask::none(),
                false,
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape mismatch for attention value: expected [2, 4, 8], got [2, 5, 8]"
        );
    }

    #[test]
    fn dropout_is_inactive_outside_autodiff_training() {
        let device = BackendKind::Flex.device().unwrap();
        let mha = MultiHeadAttentionConfig::new(8, 2)
            .with_dropout(0.5)
            .init(&device)
            .unwrap();
        let x = rand3([2, 4, 8], &device);
        let (a, wa) = mha.forward_self(x.clone(), AttentionMask::none(), true);
        let (b, _) = mha.forward_self(x, AttentionMask::none(), true);
        a.into_data().assert_eq(&b.into_data(), true);
        let sums = values(wa.unwrap().sum_dim(3));
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5));
        // On an autodiff device in training the weights are dropped and rescaled by 2.
        let ad = BackendKind::Flex.autodiff_device().unwrap();
        let mha = MultiHeadAttentionConfig::new(8, 2)
            .with_dropout(0.5)
            .init(&ad)
            .unwrap();
        let (_, w) = mha.forward_self(rand3([4, 6, 8], &ad), AttentionMask::none(), true);
        let w = values(w.unwrap());
        assert!(w.contains(&0.0));
    }
}
