//! Which dl-models network a PyTorch state dict holds, and its configuration, read from the
//! keys and shapes alone.
//!
//! This sits beside `pytorch/` because it reads the same PyTorch key layouts that module
//! defines for loading and export (the chapter's class and `nn.Sequential` names): one crate
//! knows what each network's checkpoint looks like. Each architecture is one entry of
//! [`RULES`], a function that either explains the whole key set or says which keys did not fit
//! and what it expected; adding a network adds one entry.
//!
//! What the weights cannot tell (attention heads, dropout, post- or pre-norm blocks, the
//! positional table's length, the exact image size behind a pooled feature map) comes from
//! [`InferOptions`] or the chapter's defaults, and [`InferredArchitecture::assumed`] says
//! which.

use std::collections::{BTreeMap, BTreeSet};

use dl_models::{
    CnnConfig, LstmClassifierConfig, LstmForecasterConfig, MlpConfig, ModelConfig, ModelKind,
    ScratchMlpConfig, TransformerClassifierConfig,
};

use crate::error::{Error, Result};
use crate::state_dict::StateDict;

/// Key -> shape of a state dict.
pub type Shapes = BTreeMap<String, Vec<usize>>;

/// What the weights cannot tell; `None` takes the chapter's default and records it in
/// [`InferredArchitecture::assumed`].
#[derive(Debug, Clone, Default)]
pub struct InferOptions {
    /// Attention heads of a Transformer (chapter: 8).
    pub n_heads: Option<usize>,
    /// Dropout probability of any network (each model's chapter default).
    pub dropout: Option<f64>,
    /// Length of a Transformer's positional table when the state dict holds none (chapter:
    /// 100).
    pub max_seq_length: Option<usize>,
    /// Pre-norm Transformer blocks (chapter: post-norm, `false`).
    pub norm_first: Option<bool>,
    /// Height and width of a CNN's input; the weights only fix it up to the floor of `/ 8`.
    pub image_size: Option<usize>,
}

/// A recognised network: which one, under which key layout, its configuration, and what was
/// assumed rather than read from the weights.
#[derive(Debug, Clone)]
pub struct InferredArchitecture {
    /// The network.
    pub architecture: ModelKind,
    /// The key layout the state dict uses (as in [`crate::LoadReport::layout`]).
    pub layout: &'static str,
    /// The full configuration (inferred sizes plus assumed settings).
    pub config: ModelConfig,
    /// The sizes read from the shapes, in the order a reader expects them.
    pub sizes: Vec<(&'static str, serde_json::Value)>,
    /// The settings taken from options or defaults, each with where it came from.
    pub assumed: Vec<String>,
}

impl InferredArchitecture {
    /// One line: `LstmClassifier: input_size 10, hidden_size 64, num_layers 2, num_classes 5`.
    pub fn summary(&self) -> String {
        let sizes: Vec<String> = self
            .sizes
            .iter()
            .map(|(name, value)| format!("{name} {}", compact(value)))
            .collect();
        format!("{}: {}", self.architecture.type_name(), sizes.join(", "))
    }
}

fn compact(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(compact).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// One architecture's recogniser: the whole key set explained, or why not.
type Rule = fn(&Shapes, &InferOptions) -> std::result::Result<InferredArchitecture, String>;

/// Every architecture, one entry each; the order is the order of the reasons in an error.
const RULES: &[(&str, Rule)] = &[
    ("Mlp", mlp),
    ("Cnn/ImageCnn", cnn),
    ("LstmClassifier", lstm_classifier),
    ("TransformerClassifier", transformer_classifier),
    ("ScratchMlp", scratch_mlp),
    ("LstmForecaster", lstm_forecaster),
];

/// Recognise the network whose PyTorch state dict has these key shapes.
///
/// Exactly one architecture must explain every key; otherwise the error
/// ([`Error::UnknownArchitecture`]) gives, for each architecture, the keys that did not fit and
/// what it expected. `source` names the state dict in that message.
///
/// ```
/// let device = dl_core::BackendKind::Flex.device().unwrap();
/// let config = dl_models::LstmClassifierConfig::new().with_hidden_size(12);
/// let state = dl_io::to_pytorch_state_dict(&config.init(&device)?);
/// let found = state.infer_architecture(&dl_io::InferOptions::default())?;
/// assert_eq!(
///     found.summary(),
///     "LstmClassifier: input_size 10, hidden_size 12, num_layers 2, num_classes 5"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn infer_architecture(
    shapes: &Shapes,
    options: &InferOptions,
    source: &str,
) -> Result<InferredArchitecture> {
    let unknown = |reason: String| Error::UnknownArchitecture {
        path: source.to_string(),
        reason,
    };
    if shapes.is_empty() {
        return Err(unknown("it holds no tensors".into()));
    }
    let mut found = Vec::new();
    let mut reasons = Vec::new();
    for (name, rule) in RULES {
        match rule(shapes, options) {
            Ok(inferred) => found.push(inferred),
            Err(reason) => reasons.push(format!("not {name}: {reason}")),
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(unknown(format!(
            "no dl-models network has these keys ({}); {}",
            key_list(shapes.keys().map(String::as_str)),
            reasons.join("; ")
        ))),
        _ => {
            let names: Vec<&str> = found.iter().map(|f| f.architecture.type_name()).collect();
            Err(unknown(format!(
                "the keys fit more than one network: {}",
                names.join(", ")
            )))
        }
    }
}

impl StateDict {
    /// Key -> shape of every tensor.
    pub fn shapes(&self) -> Shapes {
        self.tensors
            .iter()
            .map(|(key, data)| (key.clone(), data.shape().to_vec()))
            .collect()
    }

    /// The network these weights are, with its configuration: [`infer_architecture`] on
    /// this state dict's shapes.
    pub fn infer_architecture(&self, options: &InferOptions) -> Result<InferredArchitecture> {
        infer_architecture(&self.shapes(), options, &self.source)
    }
}

/// At most eight keys, then how many more.
fn key_list<'a>(keys: impl Iterator<Item = &'a str>) -> String {
    let keys: Vec<&str> = keys.collect();
    let mut shown: Vec<String> = keys.iter().take(8).map(|k| format!("`{k}`")).collect();
    if keys.len() > 8 {
        shown.push(format!("and {} more", keys.len() - 8));
    }
    shown.join(", ")
}

// ---- reading shapes ---------------------------------------------------------------------------

/// The shapes under test, and which keys a rule has explained.
struct Keys<'a> {
    shapes: &'a Shapes,
    used: BTreeSet<&'a str>,
}

impl<'a> Keys<'a> {
    fn new(shapes: &'a Shapes) -> Self {
        Self {
            shapes,
            used: BTreeSet::new(),
        }
    }

    fn has(&self, key: &str) -> bool {
        self.shapes.contains_key(key)
    }

    /// The shape of `key`, which must have `rank` dimensions.
    fn get(&mut self, key: &str, rank: usize) -> std::result::Result<Vec<usize>, String> {
        let Some((name, shape)) = self.shapes.get_key_value(key) else {
            return Err(format!("`{key}` is missing"));
        };
        if shape.len() != rank {
            return Err(format!(
                "`{key}` has shape {shape:?}, expected {rank} dimension(s)"
            ));
        }
        self.used.insert(name.as_str());
        Ok(shape.clone())
    }

    /// The shape of `key`, which must be `expected` (`what` says why).
    fn expect(
        &mut self,
        key: &str,
        expected: &[usize],
        what: &str,
    ) -> std::result::Result<(), String> {
        let shape = self.get(key, expected.len())?;
        if shape != expected {
            return Err(format!(
                "`{key}` has shape {shape:?}, expected {expected:?} ({what})"
            ));
        }
        Ok(())
    }

    /// A linear layer `prefix.weight` `[out, in]` and `prefix.bias` `[out]`: `(in, out)`.
    fn linear(&mut self, prefix: &str) -> std::result::Result<(usize, usize), String> {
        let w = self.get(&format!("{prefix}.weight"), 2)?;
        self.expect(&format!("{prefix}.bias"), &[w[0]], "one per output")?;
        Ok((w[1], w[0]))
    }

    /// Every key explained, or the ones left over.
    fn finish(self) -> std::result::Result<(), String> {
        let left: Vec<&str> = self
            .shapes
            .keys()
            .map(String::as_str)
            .filter(|k| !self.used.contains(k))
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("unexpected key(s) {}", key_list(left.into_iter())))
        }
    }
}

/// `in == expected` for a layer fed by the previous one.
fn chained(key: &str, input: usize, expected: usize) -> std::result::Result<(), String> {
    if input != expected {
        return Err(format!(
            "`{key}` takes {input} inputs, expected {expected} (the previous layer's outputs)"
        ));
    }
    Ok(())
}

/// Linear layers `prefix(0)`, `prefix(1)`, ... while `prefix(i).weight` exists, each fed by
/// the one before: the widths `[in, out_0, out_1, ...]`.
fn linear_chain(
    keys: &mut Keys<'_>,
    prefix: impl Fn(usize) -> String,
) -> std::result::Result<Vec<usize>, String> {
    let mut widths = Vec::new();
    let mut i = 0;
    while keys.has(&format!("{}.weight", prefix(i))) {
        let (input, output) = keys.linear(&prefix(i))?;
        match widths.last() {
            None => widths.push(input),
            Some(&last) => chained(&format!("{}.weight", prefix(i)), input, last)?,
        }
        widths.push(output);
        i += 1;
    }
    if widths.is_empty() {
        return Err(format!("`{}.weight` is missing", prefix(0)));
    }
    Ok(widths)
}

fn dropout(options: &InferOptions, default: f64, assumed: &mut Vec<String>) -> f64 {
    match options.dropout {
        Some(p) => {
            assumed.push(format!("dropout {p} (given)"));
            p
        }
        None => {
            assumed.push(format!(
                "dropout {default} (the chapter's; not in the weights, --dropout)"
            ));
            default
        }
    }
}

fn usizes(values: &[usize]) -> serde_json::Value {
    serde_json::Value::from(values.to_vec())
}

// ---- the rules ----------------------------------------------------------------------------------

/// The chapter's training-pipeline `nn.Sequential` (`0.*`, `3.*`, ...) or dl-models' own
/// names (`layers.{i}.*`).
fn mlp(
    shapes: &Shapes,
    options: &InferOptions,
) -> std::result::Result<InferredArchitecture, String> {
    let mut keys = Keys::new(shapes);
    let (layout, widths) = if keys.has("0.weight") {
        (
            "nn.Sequential",
            linear_chain(&mut keys, |i| (3 * i).to_string())?,
        )
    } else if keys.has("layers.0.weight") {
        ("dl-rs", linear_chain(&mut keys, |i| format!("layers.{i}"))?)
    } else {
        return Err("expected `0.weight` (nn.Sequential) or `layers.0.weight`".into());
    };
    keys.finish()?;
    let (input, rest) = widths.split_first().ok_or("no layers")?;
    let (classes, hidden) = rest.split_last().ok_or("no layers")?;
    let mut assumed = Vec::new();
    let config = MlpConfig::new()
        .with_input_size(*input)
        .with_hidden_sizes(hidden.to_vec())
        .with_num_classes(*classes);
    let config = config
        .clone()
        .with_dropout(dropout(options, config.dropout, &mut assumed));
    Ok(InferredArchitecture {
        architecture: ModelKind::Mlp,
        layout,
        sizes: vec![
            ("input_size", (*input).into()),
            ("hidden_sizes", usizes(hidden)),
            ("num_classes", (*classes).into()),
        ],
        config: ModelConfig::Mlp(config),
        assumed,
    })
}

/// The chapter's `ConvolutionalNeuralNetwork` (`conv1` ... `fc2`) or the image case's
/// `nn.Sequential` (`0`, `3`, `6`, `10`, `13`).
fn cnn(
    shapes: &Shapes,
    options: &InferOptions,
) -> std::result::Result<InferredArchitecture, String> {
    let mut keys = Keys::new(shapes);
    let (layout, names) = if keys.has("conv1.weight") {
        (
            "ConvolutionalNeuralNetwork",
            ["conv1", "conv2", "conv3", "fc1", "fc2"],
        )
    } else if keys.has("0.weight") && shapes.get("0.weight").is_some_and(|s| s.len() == 4) {
        ("nn.Sequential", ["0", "3", "6", "10", "13"])
    } else {
        return Err("expected `conv1.weight` or a 4-dimensional `0.weight` (nn.Sequential)".into());
    };
    let mut channels = Vec::new();
    for name in &names[..3] {
        let w = keys.get(&format!("{name}.weight"), 4)?;
        if w[2..] != [3, 3] {
            return Err(format!(
                "`{name}.weight` has shape {w:?}, expected a 3x3 kernel"
            ));
        }
        if let Some(&last) = channels.last() {
            chained(&format!("{name}.weight"), w[1], last)?;
        } else {
            channels.push(w[1]);
        }
        keys.expect(&format!("{name}.bias"), &[w[0]], "one per output channel")?;
        channels.push(w[0]);
    }
    let (flat, hidden) = keys.linear(names[3])?;
    let (fc2_in, classes) = keys.linear(names[4])?;
    chained(&format!("{}.weight", names[4]), fc2_in, hidden)?;
    keys.finish()?;
    let (in_channels, conv_channels) = (channels[0], [channels[1], channels[2], channels[3]]);
    let c3 = conv_channels[2];
    let area = if c3 == 0 || flat % c3 != 0 {
        0
    } else {
        flat / c3
    };
    let pooled = area.isqrt();
    if pooled == 0 || pooled * pooled != area {
        return Err(format!(
            "`{}.weight` takes {flat} features, expected {c3} channels x a square pooled map \
             (c3 * p * p)",
            names[3]
        ));
    }
    let mut assumed = Vec::new();
    let image_size = match options.image_size {
        Some(size) if size / 8 == pooled => {
            assumed.push(format!("image_size {size} (given)"));
            size
        }
        Some(size) => {
            return Err(format!(
                "image size {size} pools to {p}x{p}, but `{}.weight` expects {pooled}x{pooled} \
                 (an image size from {} to {})",
                names[3],
                pooled * 8,
                pooled * 8 + 7,
                p = size / 8
            ));
        }
        None => {
            // The chapter's sizes where they fit: 28x28 digits pool to 3x3, 64x64 images to 8x8.
            let size = match (in_channels, pooled) {
                (_, 3) => 28,
                (_, 8) => 64,
                _ => pooled * 8,
            };
            assumed.push(format!(
                "image_size {size} (the weights fit any size from {} to {}; --image-size)",
                pooled * 8,
                pooled * 8 + 7
            ));
            size
        }
    };
    let config = CnnConfig::new()
        .with_in_channels(in_channels)
        .with_image_size(image_size)
        .with_conv_channels(conv_channels)
        .with_hidden_size(hidden)
        .with_num_classes(classes);
    let config = config
        .clone()
        .with_dropout(dropout(options, config.dropout, &mut assumed));
    Ok(InferredArchitecture {
        architecture: if in_channels == 3 {
            ModelKind::ImageCnn
        } else {
            ModelKind::Cnn
        },
        layout,
        sizes: vec![
            ("in_channels", in_channels.into()),
            ("image_size", image_size.into()),
            ("conv_channels", usizes(&conv_channels)),
            ("hidden_size", hidden.into()),
            ("num_classes", classes.into()),
        ],
        config: ModelConfig::Cnn(config),
        assumed,
    })
}

/// An `nn.LSTM` stack under `lstm.`, one direction: `(input_size, hidden_size, num_layers)`.
fn lstm_stack(
    keys: &mut Keys<'_>,
    shapes: &Shapes,
) -> std::result::Result<(usize, usize, usize), String> {
    if !keys.has("lstm.weight_ih_l0") {
        return Err("expected `lstm.weight_ih_l0` (nn.LSTM)".into());
    }
    if let Some(key) = shapes
        .keys()
        .find(|k| k.starts_with("lstm.") && k.ends_with("_reverse"))
    {
        return Err(format!(
            "`{key}` is a bidirectional LSTM's; the LSTM models read one direction (expected \
             no `_reverse` keys)"
        ));
    }
    let first = keys.get("lstm.weight_ih_l0", 2)?;
    let input = first[1];
    if first[0] % 4 != 0 {
        return Err(format!(
            "`lstm.weight_ih_l0` has {} rows, expected 4 x hidden_size (gates i, f, g, o)",
            first[0]
        ));
    }
    let hidden = first[0] / 4;
    let mut layers = 0;
    while keys.has(&format!("lstm.weight_ih_l{layers}")) {
        let k = layers;
        let layer_in = if k == 0 { input } else { hidden };
        let why = format!("layer {k} of hidden_size {hidden}");
        keys.expect(
            &format!("lstm.weight_ih_l{k}"),
            &[4 * hidden, layer_in],
            &why,
        )?;
        keys.expect(&format!("lstm.weight_hh_l{k}"), &[4 * hidden, hidden], &why)?;
        keys.expect(&format!("lstm.bias_ih_l{k}"), &[4 * hidden], &why)?;
        keys.expect(&format!("lstm.bias_hh_l{k}"), &[4 * hidden], &why)?;
        layers += 1;
    }
    Ok((input, hidden, layers))
}

/// `dl train forecast`'s `LstmForecaster`: `lstm` (`nn.LSTM`, batch first) and `head`.
fn lstm_forecaster(
    shapes: &Shapes,
    options: &InferOptions,
) -> std::result::Result<InferredArchitecture, String> {
    let mut keys = Keys::new(shapes);
    let (input, hidden, layers) = lstm_stack(&mut keys, shapes)?;
    let (head_in, horizon) = keys.linear("head")?;
    chained("head.weight", head_in, hidden)?;
    keys.finish()?;
    let mut assumed = Vec::new();
    let config = LstmForecasterConfig::new()
        .with_input_size(input)
        .with_hidden_size(hidden)
        .with_num_layers(layers)
        .with_horizon(horizon);
    let config = config
        .clone()
        .with_dropout(dropout(options, config.dropout, &mut assumed));
    Ok(InferredArchitecture {
        architecture: ModelKind::Forecast,
        layout: "nn.LSTM",
        sizes: vec![
            ("input_size", input.into()),
            ("hidden_size", hidden.into()),
            ("num_layers", layers.into()),
            ("horizon", horizon.into()),
        ],
        config: ModelConfig::Forecast(config),
        assumed,
    })
}

/// The chapter's `LongShortTermMemory`: `lstm` (`nn.LSTM`, batch first) and `fc`.
fn lstm_classifier(
    shapes: &Shapes,
    options: &InferOptions,
) -> std::result::Result<InferredArchitecture, String> {
    let mut keys = Keys::new(shapes);
    let (input, hidden, layers) = lstm_stack(&mut keys, shapes)?;
    let (fc_in, classes) = keys.linear("fc")?;
    chained("fc.weight", fc_in, hidden)?;
    keys.finish()?;
    let mut assumed = Vec::new();
    let config = LstmClassifierConfig::new()
        .with_input_size(input)
        .with_hidden_size(hidden)
        .with_num_layers(layers)
        .with_num_classes(classes);
    let config = config
        .clone()
        .with_dropout(dropout(options, config.dropout, &mut assumed));
    Ok(InferredArchitecture {
        architecture: ModelKind::Lstm,
        layout: "nn.LSTM",
        sizes: vec![
            ("input_size", input.into()),
            ("hidden_size", hidden.into()),
            ("num_layers", layers.into()),
            ("num_classes", classes.into()),
        ],
        config: ModelConfig::Lstm(config),
        assumed,
    })
}

/// The chapter's `Transformer` (`embedding`, `transformer_blocks.{i}`, `fc`), or its patch
/// variant (`patch_embedding`, a linear layer).
fn transformer_classifier(
    shapes: &Shapes,
    options: &InferOptions,
) -> std::result::Result<InferredArchitecture, String> {
    let mut keys = Keys::new(shapes);
    let (d, vocab, patch) = if keys.has("embedding.weight") {
        let w = keys.get("embedding.weight", 2)?;
        (w[1], Some(w[0]), None)
    } else if keys.has("patch_embedding.weight") {
        let (patch, d) = keys.linear("patch_embedding")?;
        (d, None, Some(patch))
    } else {
        return Err(
            "expected `embedding.weight` (nn.Embedding) or `patch_embedding.weight`".into(),
        );
    };
    let (layers, d_ff) = transformer_blocks(&mut keys, d)?;
    let (fc_in, classes) = keys.linear("fc")?;
    chained("fc.weight", fc_in, d)?;
    let table = positional_table(shapes, &mut keys, d)?;
    keys.finish()?;
    let defaults = TransformerClassifierConfig::new();
    let mut assumed = Vec::new();
    let (n_heads, max_seq_length, norm_first) =
        transformer_settings(options, d, table, &mut assumed)?;
    let d_ff = d_ff.unwrap_or(defaults.d_ff);
    let mut config = TransformerClassifierConfig::new()
        .with_d_model(d)
        .with_n_heads(n_heads)
        .with_n_layers(layers)
        .with_d_ff(d_ff)
        .with_max_seq_length(max_seq_length)
        .with_num_classes(classes)
        .with_patch_size(patch)
        .with_norm_first(norm_first);
    let mut sizes: Vec<(&'static str, serde_json::Value)> = Vec::new();
    match (vocab, patch) {
        (Some(v), _) => {
            config = config.with_vocab_size(v);
            sizes.push(("vocab_size", v.into()));
        }
        (None, Some(p)) => sizes.push(("patch_size", p.into())),
        (None, None) => {}
    }
    sizes.extend([
        ("d_model", d.into()),
        ("n_layers", layers.into()),
        ("d_ff", d_ff.into()),
        ("num_classes", classes.into()),
        ("max_seq_length", max_seq_length.into()),
        ("n_heads", n_heads.into()),
    ]);
    let config = config
        .clone()
        .with_dropout(dropout(options, config.dropout, &mut assumed));
    Ok(InferredArchitecture {
        architecture: ModelKind::Transformer,
        layout: "chapter Transformer",
        sizes,
        config: ModelConfig::Transformer(config),
        assumed,
    })
}

/// Check every `transformer_blocks.{i}` of width `d` (attention, feed-forward, norms): the
/// number of blocks and the feed-forward width, the same in each.
fn transformer_blocks(
    keys: &mut Keys<'_>,
    d: usize,
) -> std::result::Result<(usize, Option<usize>), String> {
    let mut layers = 0;
    let mut d_ff = None;
    while keys.has(&format!(
        "transformer_blocks.{layers}.attention.in_proj_weight"
    )) {
        let p = format!("transformer_blocks.{layers}");
        let why = format!("block {layers} of d_model {d}");
        keys.expect(&format!("{p}.attention.in_proj_weight"), &[3 * d, d], &why)?;
        keys.expect(&format!("{p}.attention.in_proj_bias"), &[3 * d], &why)?;
        keys.expect(&format!("{p}.attention.out_proj.weight"), &[d, d], &why)?;
        keys.expect(&format!("{p}.attention.out_proj.bias"), &[d], &why)?;
        let (ff_in, ff) = keys.linear(&format!("{p}.feed_forward.0"))?;
        chained(&format!("{p}.feed_forward.0.weight"), ff_in, d)?;
        if let Some(first) = d_ff
            && first != ff
        {
            return Err(format!(
                "`{p}.feed_forward.0.weight` has {ff} outputs, expected {first} as in block 0"
            ));
        }
        d_ff = Some(ff);
        keys.expect(&format!("{p}.feed_forward.3.weight"), &[d, ff], &why)?;
        keys.expect(&format!("{p}.feed_forward.3.bias"), &[d], &why)?;
        for norm in ["norm1", "norm2"] {
            keys.expect(&format!("{p}.{norm}.weight"), &[d], &why)?;
            keys.expect(&format!("{p}.{norm}.bias"), &[d], &why)?;
        }
        layers += 1;
    }
    Ok((layers, d_ff))
}

/// The length of the positional table when the file holds one. The chapter's table is a
/// plain attribute (not saved); a model that registers it as a buffer saves `pos_encoding`
/// `[1, max, d]`, which gives its length.
fn positional_table(
    shapes: &Shapes,
    keys: &mut Keys<'_>,
    d: usize,
) -> std::result::Result<Option<usize>, String> {
    let Some(shape) = shapes.get("pos_encoding") else {
        return Ok(None);
    };
    let shape = shape.clone();
    keys.get("pos_encoding", shape.len())?;
    match shape[..] {
        [1, max, w] | [max, w] if w == d => Ok(Some(max)),
        _ => Err(format!(
            "`pos_encoding` has shape {shape:?}, expected [1, max_seq_length, {d}]"
        )),
    }
}

/// What the weights do not say about a Transformer of width `d`: the heads, the positional
/// table's length (unless the file held it, `table`) and the norm placement, each from
/// `options` or the chapter's default, noted in `assumed`.
fn transformer_settings(
    options: &InferOptions,
    d: usize,
    table: Option<usize>,
    assumed: &mut Vec<String>,
) -> std::result::Result<(usize, usize, bool), String> {
    let defaults = TransformerClassifierConfig::new();
    let n_heads = match options.n_heads {
        Some(h) => {
            assumed.push(format!("n_heads {h} (given)"));
            h
        }
        None => {
            assumed.push(format!(
                "n_heads {} (the chapter's; not in the weights, --heads)",
                defaults.n_heads
            ));
            defaults.n_heads
        }
    };
    if n_heads == 0 || !d.is_multiple_of(n_heads) {
        return Err(format!(
            "d_model {d} is not divisible by {n_heads} attention heads (give the heads the \
             weights were trained with, a divisor of {d}, with --heads)"
        ));
    }
    let max_seq_length = match (table, options.max_seq_length) {
        (Some(max), _) => max,
        (None, Some(max)) => {
            assumed.push(format!("max_seq_length {max} (given)"));
            max
        }
        (None, None) => {
            assumed.push(format!(
                "max_seq_length {} (the chapter's; the positional table is not saved, \
                 --max-seq-length)",
                defaults.max_seq_length
            ));
            defaults.max_seq_length
        }
    };
    let norm_first = options.norm_first.unwrap_or(defaults.norm_first);
    assumed.push(if options.norm_first.is_some() {
        format!("norm_first {norm_first} (given)")
    } else {
        "post-norm blocks, norm_first false (the chapter's; not in the weights, --norm-first)"
            .to_string()
    });
    Ok((n_heads, max_seq_length, norm_first))
}

/// The chapter's NumPy `DeepNeuralNetwork` as dl-models saves it: `weights.{l}` `[out, in]`
/// and `biases.{l}` `[out]`.
fn scratch_mlp(
    shapes: &Shapes,
    _options: &InferOptions,
) -> std::result::Result<InferredArchitecture, String> {
    let mut keys = Keys::new(shapes);
    if !keys.has("weights.0") {
        return Err("expected `weights.0` (DeepNeuralNetwork)".into());
    }
    let mut sizes = Vec::new();
    let mut l = 0;
    while keys.has(&format!("weights.{l}")) {
        let w = keys.get(&format!("weights.{l}"), 2)?;
        match sizes.last() {
            None => sizes.push(w[1]),
            Some(&last) => chained(&format!("weights.{l}"), w[1], last)?,
        }
        keys.expect(&format!("biases.{l}"), &[w[0]], "one per output")?;
        sizes.push(w[0]);
        l += 1;
    }
    keys.finish()?;
    let config = ScratchMlpConfig::new(sizes.clone());
    let assumed = vec![format!(
        "activation {:?}, output {:?} (the chapter's; not in the weights)",
        config.activation, config.output
    )];
    Ok(InferredArchitecture {
        architecture: ModelKind::Scratch,
        layout: "identity",
        sizes: vec![("layer_sizes", usizes(&sizes))],
        config: ModelConfig::Scratch(config),
        assumed,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use burn::tensor::Device;
    use dl_models::ScratchOutput;

    use super::*;
    use crate::to_pytorch_state_dict;

    fn device() -> Device {
        dl_core::BackendKind::Flex.device().unwrap()
    }

    fn infer(state: &StateDict, options: &InferOptions) -> InferredArchitecture {
        state.infer_architecture(options).unwrap()
    }

    #[test]
    fn mlp_at_several_sizes() {
        for (input, hidden, classes) in [
            (784, vec![512, 256], 10),
            (20, vec![16, 12], 5),
            (7, vec![], 3),
            (5, vec![4, 4, 4], 2),
        ] {
            let config = MlpConfig::new()
                .with_input_size(input)
                .with_hidden_sizes(hidden.clone())
                .with_num_classes(classes);
            let state = to_pytorch_state_dict(&config.init(&device()).unwrap());
            let found = infer(&state, &InferOptions::default());
            assert_eq!(found.architecture, ModelKind::Mlp);
            assert_eq!(found.layout, "nn.Sequential");
            let ModelConfig::Mlp(got) = &found.config else {
                panic!("{found:?}")
            };
            assert_eq!(got, &config, "{hidden:?}");
        }
    }

    #[test]
    fn cnn_and_image_cnn_at_several_sizes() {
        for config in [
            CnnConfig::new(),
            CnnConfig::image_cnn(),
            CnnConfig::new()
                .with_image_size(16)
                .with_conv_channels([4, 6, 8])
                .with_hidden_size(16)
                .with_num_classes(5),
            CnnConfig::new()
                .with_in_channels(3)
                .with_image_size(32)
                .with_conv_channels([2, 3, 5])
                .with_hidden_size(7)
                .with_num_classes(4),
            CnnConfig::new()
                .with_in_channels(2)
                .with_image_size(8)
                .with_conv_channels([1, 1, 1])
                .with_hidden_size(1)
                .with_num_classes(1),
        ] {
            let state = to_pytorch_state_dict(&config.init(&device()).unwrap());
            let found = infer(&state, &InferOptions::default());
            let expected = if config.in_channels == 3 {
                ModelKind::ImageCnn
            } else {
                ModelKind::Cnn
            };
            assert_eq!(found.architecture, expected);
            let ModelConfig::Cnn(got) = &found.config else {
                panic!("{found:?}")
            };
            assert_eq!(got, &config);
            // The nn.Sequential names of the chapter's image case give the same.
            let layout = crate::layout_named::<dl_models::Cnn>("nn.Sequential").unwrap();
            let model = config.init(&device()).unwrap();
            let sequential = crate::state_dict_with_layout(&model, &layout);
            let found = infer(&sequential, &InferOptions::default());
            assert_eq!(found.layout, "nn.Sequential");
            let ModelConfig::Cnn(got) = &found.config else {
                panic!("{found:?}")
            };
            assert_eq!(got, &config);
        }
    }

    #[test]
    fn forecasters_of_any_size_are_recognised() {
        for (hidden, layers, horizon) in [(32, 1, 1), (8, 2, 3), (5, 3, 1)] {
            let config = LstmForecasterConfig::new()
                .with_hidden_size(hidden)
                .with_num_layers(layers)
                .with_horizon(horizon);
            let state = to_pytorch_state_dict(&config.init(&device()).unwrap());
            let found = infer(&state, &InferOptions::default());
            assert_eq!(found.architecture, ModelKind::Forecast);
            assert_eq!(
                found.summary(),
                format!(
                    "LstmForecaster: input_size 1, hidden_size {hidden}, num_layers {layers}, horizon {horizon}"
                )
            );
            let ModelConfig::Forecast(got) = &found.config else {
                panic!("{found:?}")
            };
            assert_eq!(
                (got.input_size, got.hidden_size, got.num_layers, got.horizon),
                (1, hidden, layers, horizon)
            );
        }
    }

    #[test]
    fn cnn_image_size_is_assumed_within_the_pooled_range() {
        let config = CnnConfig::new()
            .with_image_size(20)
            .with_conv_channels([2, 2, 2])
            .with_hidden_size(3);
        let state = to_pytorch_state_dict(&config.init(&device()).unwrap());
        let found = infer(&state, &InferOptions::default());
        let ModelConfig::Cnn(got) = &found.config else {
            panic!()
        };
        assert_eq!(got.image_size, 16);
        assert!(
            found.assumed.iter().any(|a| a.contains("from 16 to 23")),
            "{:?}",
            found.assumed
        );
        let given = InferOptions {
            image_size: Some(20),
            ..Default::default()
        };
        let ModelConfig::Cnn(got) = infer(&state, &given).config else {
            panic!()
        };
        assert_eq!(got.image_size, 20);
        let wrong = InferOptions {
            image_size: Some(28),
            ..Default::default()
        };
        let err = state.infer_architecture(&wrong).unwrap_err().to_string();
        assert!(err.contains("image size 28 pools to 3x3"), "{err}");
    }

    #[test]
    fn lstm_at_several_sizes() {
        for (input, hidden, layers, classes) in
            [(10, 64, 2, 5), (28, 64, 2, 10), (3, 5, 1, 2), (7, 12, 3, 4)]
        {
            let config = LstmClassifierConfig::new()
                .with_input_size(input)
                .with_hidden_size(hidden)
                .with_num_layers(layers)
                .with_num_classes(classes);
            let state = to_pytorch_state_dict(&config.init(&device()).unwrap());
            let found = infer(&state, &InferOptions::default());
            assert_eq!(found.architecture, ModelKind::Lstm);
            let ModelConfig::Lstm(got) = &found.config else {
                panic!("{found:?}")
            };
            assert_eq!(
                serde_json::to_value(got).unwrap(),
                serde_json::to_value(&config).unwrap()
            );
            assert_eq!(
                found.summary(),
                format!(
                    "LstmClassifier: input_size {input}, hidden_size {hidden}, num_layers {layers}, num_classes {classes}"
                )
            );
        }
    }

    #[test]
    fn bidirectional_lstm_is_named() {
        let mut shapes = Shapes::new();
        for (k, s) in [
            ("lstm.weight_ih_l0", vec![8, 3]),
            ("lstm.weight_hh_l0", vec![8, 2]),
            ("lstm.bias_ih_l0", vec![8]),
            ("lstm.bias_hh_l0", vec![8]),
            ("lstm.weight_ih_l0_reverse", vec![8, 3]),
            ("fc.weight", vec![2, 4]),
            ("fc.bias", vec![2]),
        ] {
            shapes.insert(k.into(), s);
        }
        let err = infer_architecture(&shapes, &InferOptions::default(), "bi.pt")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("bi.pt: "), "{err}");
        assert!(
            err.contains("`lstm.weight_ih_l0_reverse` is a bidirectional LSTM's"),
            "{err}"
        );
    }

    #[test]
    fn transformer_at_several_sizes() {
        for config in [
            TransformerClassifierConfig::new(),
            TransformerClassifierConfig::new()
                .with_patch_size(Some(49))
                .with_max_seq_length(100),
            TransformerClassifierConfig::new()
                .with_vocab_size(50)
                .with_d_model(16)
                .with_n_heads(2)
                .with_n_layers(3)
                .with_d_ff(24)
                .with_num_classes(4),
            TransformerClassifierConfig::new()
                .with_patch_size(Some(5))
                .with_d_model(8)
                .with_n_layers(1)
                .with_d_ff(8)
                .with_num_classes(3),
        ] {
            let state = to_pytorch_state_dict(&config.init(&device()).unwrap());
            let options = InferOptions {
                n_heads: Some(config.n_heads),
                ..Default::default()
            };
            let found = infer(&state, &options);
            assert_eq!(found.architecture, ModelKind::Transformer);
            let ModelConfig::Transformer(got) = &found.config else {
                panic!("{found:?}")
            };
            assert_eq!(
                serde_json::to_value(got).unwrap(),
                serde_json::to_value(&config).unwrap()
            );
        }
    }

    #[test]
    fn transformer_heads_are_assumed_and_checked() {
        let config = TransformerClassifierConfig::new()
            .with_vocab_size(9)
            .with_d_model(12)
            .with_n_heads(3)
            .with_n_layers(1)
            .with_d_ff(5);
        let state = to_pytorch_state_dict(&config.init(&device()).unwrap());
        let err = state
            .infer_architecture(&InferOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("d_model 12 is not divisible by 8 attention heads"),
            "{err}"
        );
        let found = infer(
            &state,
            &InferOptions {
                n_heads: Some(3),
                ..Default::default()
            },
        );
        assert!(
            found.assumed.iter().any(|a| a == "n_heads 3 (given)"),
            "{:?}",
            found.assumed
        );
        assert!(
            found
                .assumed
                .iter()
                .any(|a| a.contains("max_seq_length 100")),
            "{:?}",
            found.assumed
        );
        // A saved positional table gives its length.
        let mut shapes = state.shapes();
        shapes.insert("pos_encoding".into(), vec![1, 30, 12]);
        let found = infer_architecture(
            &shapes,
            &InferOptions {
                n_heads: Some(4),
                ..Default::default()
            },
            "t",
        )
        .unwrap();
        let ModelConfig::Transformer(got) = found.config else {
            panic!()
        };
        assert_eq!((got.max_seq_length, got.n_heads), (30, 4));
    }

    #[test]
    fn scratch_at_several_sizes() {
        for sizes in [vec![784, 128, 10], vec![4, 3], vec![6, 5, 4, 3]] {
            let config = ScratchMlpConfig::new(sizes.clone()).with_output(ScratchOutput::Sigmoid);
            let state = to_pytorch_state_dict(&config.init(&device()).unwrap());
            let found = infer(&state, &InferOptions::default());
            assert_eq!(found.architecture, ModelKind::Scratch);
            let ModelConfig::Scratch(got) = &found.config else {
                panic!("{found:?}")
            };
            assert_eq!(got.layer_sizes, sizes);
        }
    }

    #[test]
    fn unknown_keys_are_named_with_what_each_network_expected() {
        let mut shapes = Shapes::new();
        shapes.insert("encoder.weight".into(), vec![3, 4]);
        let err = infer_architecture(&shapes, &InferOptions::default(), "x.pt")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("x.pt: "), "{err}");
        assert!(err.contains("`encoder.weight`"), "{err}");
        assert!(
            err.contains("not LstmClassifier: expected `lstm.weight_ih_l0`"),
            "{err}"
        );
        // A known network with one extra key: the key is named.
        let config = MlpConfig::new()
            .with_input_size(3)
            .with_hidden_sizes(vec![2])
            .with_num_classes(2);
        let mut shapes = to_pytorch_state_dict(&config.init(&device()).unwrap()).shapes();
        shapes.insert("extra.bias".into(), vec![2]);
        let err = infer_architecture(&shapes, &InferOptions::default(), "x.pt")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not Mlp: unexpected key(s) `extra.bias`"),
            "{err}"
        );
        // A chained shape that does not fit.
        let mut shapes = to_pytorch_state_dict(&config.init(&device()).unwrap()).shapes();
        shapes.insert("3.weight".into(), vec![2, 5]);
        let err = infer_architecture(&shapes, &InferOptions::default(), "x.pt")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`3.weight` takes 5 inputs, expected 2"),
            "{err}"
        );
        let err = infer_architecture(&Shapes::new(), &InferOptions::default(), "e.pt")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no tensors"), "{err}");
    }
}
