//! The chapter's `Transformer`: embedding, sinusoidal positions, dropout, post-norm blocks,
//! mean over the sequence, linear classifier.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use dl_core::{Classifier, Error, FromTensorData, Result, validate};
use dl_layers::{
    AttentionMask, KeyLayout, PositionalEncoding, PositionalEncodingConfig, PytorchModel,
    TransformerBlock, TransformerBlockConfig,
};

use crate::mlp::ParamCount;
use dl_layers::{dropout_forward, linear_forward};

/// Configuration of [`TransformerClassifier`].
///
/// The chapter gives the `Transformer` no default sizes; ours are its attention example's
/// `d_model = 64`, `n_heads = 8`, with two blocks of feed-forward width 256, a vocabulary of
/// 1000 and sequences up to 100 tokens. With `patch_size` set the model reads feature vectors
/// (for example 7x7 image patches, 49 values each) through a linear patch embedding instead of
/// token ids.
///
/// ```
/// let config = dl_models::TransformerClassifierConfig::new();
/// assert_eq!((config.d_model, config.n_heads, config.n_layers), (64, 8, 2));
/// ```
#[derive(Config, Debug, PartialEq)]
pub struct TransformerClassifierConfig {
    /// Number of token ids (ignored with `patch_size`).
    #[config(default = 1000)]
    pub vocab_size: usize,
    /// Width of the model.
    #[config(default = 64)]
    pub d_model: usize,
    /// Attention heads per block.
    #[config(default = 8)]
    pub n_heads: usize,
    /// Transformer blocks.
    #[config(default = 2)]
    pub n_layers: usize,
    /// Width of each block's feed-forward network.
    #[config(default = 256)]
    pub d_ff: usize,
    /// Longest sequence the positional table covers.
    #[config(default = 100)]
    pub max_seq_length: usize,
    /// Number of classes.
    #[config(default = 10)]
    pub num_classes: usize,
    /// Dropout after the positions and inside each block (the chapter's 0.1).
    #[config(default = 0.1)]
    pub dropout: f64,
    /// Read feature vectors of this size through a linear `patch_embedding` instead of token
    /// ids through `embedding`.
    #[config(default = "None")]
    pub patch_size: Option<usize>,
    /// Pre-norm blocks instead of the chapter's post-norm.
    #[config(default = false)]
    pub norm_first: bool,
}

impl TransformerClassifierConfig {
    /// Number of parameters [`TransformerClassifierConfig::init`] would allocate, computed
    /// without allocating; an error when it overflows `usize`. (The positional table,
    /// `max_seq_length x d_model` values, is a constant, not a parameter.)
    ///
    /// ```
    /// assert_eq!(dl_models::TransformerClassifierConfig::new().num_params()?, 164_618);
    /// # Ok::<(), dl_core::Error>(())
    /// ```
    pub fn num_params(&self) -> Result<usize> {
        let d = self.d_model;
        let mut total = ParamCount::new("transformer");
        match self.patch_size {
            Some(size) => total.linear(size, d),
            None => total.add(&[self.vocab_size, d]),
        }
        let mut block = ParamCount::new("transformer");
        block.linear(d, d.saturating_mul(3)); // in_proj
        block.linear(d, d); // out_proj
        block.linear(d, self.d_ff);
        block.linear(self.d_ff, d);
        block.add(&[4, d]); // norm1, norm2: weight and bias
        total.add(&[self.n_layers, block.finish()?]);
        total.linear(d, self.num_classes);
        total.finish()
    }

    /// Build the network with PyTorch's initialisation.
    pub fn init(&self, device: &Device) -> Result<TransformerClassifier> {
        validate::probability("transformer dropout", self.dropout)?;
        validate::positive("transformer d_model", self.d_model)?;
        validate::positive("transformer num_classes", self.num_classes)?;
        let (embedding, patch_embedding) = match self.patch_size {
            Some(size) => {
                validate::positive("transformer patch_size", size)?;
                (
                    None,
                    Some(LinearConfig::new(size, self.d_model).init(device)),
                )
            }
            None => {
                validate::positive("transformer vocab_size", self.vocab_size)?;
                (
                    Some(EmbeddingConfig::new(self.vocab_size, self.d_model).init(device)),
                    None,
                )
            }
        };
        let block = TransformerBlockConfig::new(self.d_model, self.n_heads, self.d_ff)
            .with_dropout(self.dropout)
            .with_norm_first(self.norm_first);
        let transformer_blocks = (0..self.n_layers)
            .map(|_| block.init(device))
            .collect::<Result<Vec<_>>>()?;
        Ok(TransformerClassifier {
            embedding,
            patch_embedding,
            pos_encoding: PositionalEncodingConfig::new(self.max_seq_length, self.d_model)
                .init(device)?,
            transformer_blocks,
            fc: LinearConfig::new(self.d_model, self.num_classes).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
        })
    }
}

/// A batch for [`TransformerClassifier`]: token ids or feature vectors (patches).
#[derive(Debug, Clone)]
pub enum TransformerInput {
    /// Token ids `[batch, seq]` for a model with a token `embedding`.
    Tokens(Tensor<2, Int>),
    /// Feature vectors `[batch, seq, patch_size]` for a model with a `patch_embedding`.
    Patches(Tensor<3>),
}

/// Integer data `[batch, seq]` becomes [`TransformerInput::Tokens`], float data
/// `[batch, seq, patch_size]` [`TransformerInput::Patches`]; any other rank is an error.
///
/// ```
/// use burn::tensor::TensorData;
/// use dl_core::FromTensorData;
/// use dl_models::TransformerInput;
///
/// let device = dl_core::BackendKind::Flex.device()?;
/// let ids = TensorData::new(vec![1i64, 2, 3], [1, 3]);
/// assert!(matches!(TransformerInput::from_tensor_data(ids, &device)?, TransformerInput::Tokens(_)));
/// let patches = TensorData::new(vec![0.5f32; 6], [1, 3, 2]);
/// assert!(matches!(TransformerInput::from_tensor_data(patches, &device)?, TransformerInput::Patches(_)));
/// # Ok::<(), dl_core::Error>(())
/// ```
impl FromTensorData for TransformerInput {
    fn from_tensor_data(data: TensorData, device: &Device) -> Result<Self> {
        if data.dtype().is_float() {
            return Tensor::<3>::from_tensor_data(data, device).map(Self::Patches);
        }
        if data.shape().len() != 2 || !data.dtype().is_int() {
            return Err(Error::invalid(
                "transformer input",
                "token ids [batch, seq] (integers) or patches [batch, seq, patch_size] (floats)",
                format!("{:?} values of shape {:?}", data.dtype(), data.shape()),
            ));
        }
        Ok(Self::Tokens(Tensor::from_data(data, device)))
    }
}

/// The chapter's `Transformer` classifier.
///
/// PyTorch keys: `embedding.weight` `[vocab, d]` (or `patch_embedding.weight` `[d, patch]`,
/// `patch_embedding.bias`), per block `transformer_blocks.{i}.attention.in_proj_weight`
/// `[3d, d]`, `.attention.in_proj_bias`, `.attention.out_proj.weight` `[d, d]`,
/// `.attention.out_proj.bias`, `.feed_forward.0.weight` `[d_ff, d]`, `.feed_forward.0.bias`,
/// `.feed_forward.3.weight` `[d, d_ff]`, `.feed_forward.3.bias`, `.norm1.weight`,
/// `.norm1.bias`, `.norm2.*`, then `fc.weight` `[classes, d]`, `fc.bias`. The positional
/// table is not a parameter (the chapter keeps it as a plain attribute).
///
/// ```
/// use burn::tensor::{Int, Tensor};
/// use dl_models::{TransformerClassifierConfig, TransformerInput};
/// let device = dl_core::BackendKind::Flex.device().unwrap();
/// let model = TransformerClassifierConfig::new().init(&device).unwrap();
/// let tokens = Tensor::<2, Int>::zeros([2, 12], &device);
/// let (logits, attention) = model.try_forward_with_attention(TransformerInput::Tokens(tokens)).unwrap();
/// assert_eq!(logits.dims(), [2, 10]);
/// assert_eq!(attention.len(), 2);
/// assert_eq!(attention[0].dims(), [2, 8, 12, 12]); // [batch, heads, query, key]
/// ```
#[derive(Module, Debug)]
pub struct TransformerClassifier {
    /// Token embedding (token-id models).
    pub embedding: Option<Embedding>,
    /// Linear patch embedding (feature-vector models).
    pub patch_embedding: Option<Linear>,
    /// Sinusoidal positions (a constant, not a parameter).
    pub pos_encoding: PositionalEncoding,
    /// The post-norm blocks.
    pub transformer_blocks: Vec<TransformerBlock>,
    /// Classifier on the mean over the sequence.
    pub fc: Linear,
    /// Dropout after adding the positions.
    pub dropout: Dropout,
}

impl TransformerClassifier {
    /// Logits `[batch, classes]`.
    ///
    /// Panics where [`TransformerClassifier::try_forward`] returns an error (a token outside
    /// the vocabulary, a sequence longer than the positional table, a wrong patch width);
    /// use that on user data.
    pub fn forward(&self, input: TransformerInput) -> Tensor<2> {
        self.try_forward(input).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Logits `[batch, classes]`, or an error naming what in `input` does not fit the model.
    pub fn try_forward(&self, input: TransformerInput) -> Result<Tensor<2>> {
        Ok(self.run(input, false)?.0)
    }

    /// Logits and every block's attention weights `[batch, heads, query, key]`; panics where
    /// [`TransformerClassifier::try_forward_with_attention`] returns an error.
    pub fn forward_with_attention(&self, input: TransformerInput) -> (Tensor<2>, Vec<Tensor<4>>) {
        self.try_forward_with_attention(input)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Logits and every block's attention weights `[batch, heads, query, key]`, or an error
    /// naming what in `input` does not fit the model.
    pub fn try_forward_with_attention(
        &self,
        input: TransformerInput,
    ) -> Result<(Tensor<2>, Vec<Tensor<4>>)> {
        self.run(input, true)
    }

    fn embed(&self, input: TransformerInput) -> Result<Tensor<3>> {
        match (input, &self.embedding, &self.patch_embedding) {
            (TransformerInput::Tokens(tokens), Some(embedding), _) => {
                let vocab = embedding.weight.dims()[0];
                check_token_range(&tokens, vocab)?;
                Ok(embedding.forward(tokens))
            }
            (TransformerInput::Patches(x), _, Some(linear)) => {
                let expected = linear.weight.dims()[0];
                let dims = x.dims();
                if dims[2] != expected {
                    return Err(Error::shape_mismatch(
                        "transformer patches",
                        &[dims[0], dims[1], expected],
                        &dims,
                    ));
                }
                Ok(linear_forward(linear, x))
            }
            (TransformerInput::Tokens(_), None, _) => Err(Error::invalid(
                "transformer input",
                "patches (this model has a patch embedding)",
                "token ids",
            )),
            (TransformerInput::Patches(_), _, None) => Err(Error::invalid(
                "transformer input",
                "token ids (this model has a token embedding)",
                "patches",
            )),
        }
    }

    fn run(
        &self,
        input: TransformerInput,
        need_weights: bool,
    ) -> Result<(Tensor<2>, Vec<Tensor<4>>)> {
        let x = self.embed(input)?;
        let [batch, seq, d_model] = x.dims();
        if seq == 0 {
            return Err(Error::Empty {
                what: "transformer sequence".into(),
            });
        }
        let mut x = dropout_forward(&self.dropout, self.pos_encoding.try_forward(x)?);
        let mut weights = Vec::new();
        for block in &self.transformer_blocks {
            let (out, w) = block.forward_with(x, AttentionMask::none(), need_weights);
            x = out;
            weights.extend(w);
        }
        let pooled = x.mean_dim(1).reshape([batch, d_model]);
        Ok((linear_forward(&self.fc, pooled), weights))
    }
}

/// Token ids outside the vocabulary would read out of bounds in the embedding.
fn check_token_range(tokens: &Tensor<2, Int>, vocab: usize) -> Result<()> {
    let data = tokens.to_data();
    if let Some(bad) = data.iter::<i64>().find(|&t| t < 0 || t as usize >= vocab) {
        return Err(Error::invalid(
            "token id",
            format!("a value in 0..{vocab}"),
            bad,
        ));
    }
    Ok(())
}

impl Classifier for TransformerClassifier {
    type Input = TransformerInput;

    /// Panics with the error's message for an input that does not fit the model (wrong
    /// kind, shape, token id or length); use [`TransformerClassifier::try_forward`] on user
    /// data.
    fn logits(&self, input: TransformerInput) -> Tensor<2> {
        self.forward(input)
    }

    fn num_classes(&self) -> usize {
        self.fc.weight.dims()[1]
    }
}

impl PytorchModel for TransformerClassifier {
    /// The chapter's `Transformer` names (the feed-forward's `nn.Sequential` indices come from
    /// dl-layers' `PytorchPath`).
    fn key_layouts() -> &'static [KeyLayout] {
        &[KeyLayout {
            name: "chapter Transformer",
            map: KeyLayout::IDENTITY.map,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use dl_core::BackendKind;

    #[test]
    fn from_tensor_data_rejects_ids_of_the_wrong_rank_and_booleans() {
        let device = BackendKind::Flex.device().unwrap();
        for data in [
            TensorData::new(vec![1i64; 6], [1, 2, 3]),
            TensorData::new(vec![true; 3], [1, 3]),
        ] {
            let err = TransformerInput::from_tensor_data(data, &device).unwrap_err();
            assert!(err.to_string().contains("token ids [batch, seq]"), "{err}");
        }
        let patches = TensorData::new(vec![0.5f32; 4], [2, 2]);
        let err = TransformerInput::from_tensor_data(patches, &device).unwrap_err();
        assert!(err.to_string().contains("rank 3"), "{err}");
    }

    #[test]
    fn parameter_count_matches_pytorch() {
        let device = BackendKind::Flex.device().unwrap();
        // PyTorch: Transformer(1000, 64, 8, 2, 256, 100, 10) has 164_618 parameters.
        let model = TransformerClassifierConfig::new().init(&device).unwrap();
        assert_eq!(model.parameter_count(), 164_618);
        let patches = TransformerClassifierConfig::new()
            .with_patch_size(Some(49))
            .with_n_layers(3)
            .with_d_ff(32);
        assert_eq!(
            patches.num_params().unwrap(),
            patches.init(&device).unwrap().parameter_count()
        );
        let huge = TransformerClassifierConfig::new().with_d_model(1 << 40);
        assert!(huge.num_params().is_err());
    }

    #[test]
    fn patch_model_reads_features() {
        let device = BackendKind::Flex.device().unwrap();
        let model = TransformerClassifierConfig::new()
            .with_patch_size(Some(49))
            .with_max_seq_length(16)
            .init(&device)
            .unwrap();
        // Images 0 and 1 are the same, image 2 another: the logits follow the patches, and
        // each image's logits are those of the image alone.
        let one = || Tensor::<3>::random([1, 16, 49], Distribution::Normal(0.0, 1.0), &device);
        let (a, c) = (one(), one());
        let batch = Tensor::cat(vec![a.clone(), a, c.clone()], 0);
        let logits = model.forward(TransformerInput::Patches(batch));
        assert_eq!(logits.dims(), [3, 10]);
        let row = |i: usize| logits.clone().narrow(0, i, 1);
        dl_core::assert_tensor_close!(row(0), row(1), 1e-5, 1e-6);
        let alone = model.forward(TransformerInput::Patches(c));
        dl_core::assert_tensor_close!(row(2), alone, 1e-5, 1e-6);
        let difference = (row(0) - row(2)).abs().max().into_scalar::<f32>();
        assert!(
            difference > 1e-3,
            "other patches, same logits ({difference})"
        );
        let err = model
            .try_forward(TransformerInput::Tokens(Tensor::zeros([3, 16], &device)))
            .unwrap_err();
        assert!(err.to_string().contains("patch embedding"), "{err}");
    }

    #[test]
    fn bad_inputs_are_errors() {
        let device = BackendKind::Flex.device().unwrap();
        let model = TransformerClassifierConfig::new()
            .with_max_seq_length(8)
            .init(&device)
            .unwrap();
        let too_long = Tensor::<2, Int>::zeros([1, 9], &device);
        let err = model
            .try_forward(TransformerInput::Tokens(too_long))
            .unwrap_err();
        assert!(err.to_string().contains("max_seq_length"), "{err}");
        let out_of_vocab = Tensor::<2, Int>::from_ints([[1, 1000]], &device);
        let err = model
            .try_forward(TransformerInput::Tokens(out_of_vocab))
            .unwrap_err();
        assert!(err.to_string().contains("token id"), "{err}");
        let err = TransformerClassifierConfig::new()
            .with_n_heads(7)
            .init(&device)
            .unwrap_err();
        assert!(err.to_string().contains("head"), "{err}");
    }
}
