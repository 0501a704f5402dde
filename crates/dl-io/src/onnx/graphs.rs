//! The inference graph of each dl-models network, in ONNX operators of opset 17.
//!
//! Weights are the model's PyTorch state dict ([`crate::to_pytorch_state_dict`]), unchanged:
//! where ONNX wants another layout (the LSTM's gate order, a transposed projection) the graph
//! rearranges the initializer with `Split`/`Concat`/`Transpose` nodes, which runtimes fold into
//! constants when they load the model. Dropout is left out (inference).

use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{LayerNorm, Linear, PaddingConfig2d};
use dl_layers::{Lstm, LstmLayer, TransformerBlock};
use dl_models::{
    Cnn, LstmClassifier, LstmForecaster, Mlp, ScratchActivation, ScratchMlp, ScratchOutput,
    TransformerClassifier,
};

use onnx_ir::GraphProto;

use super::builder::{Attr, Dim, GraphBuilder, data_type};
use super::error::OnnxError;
use super::export::OnnxExportOptions;
use crate::pytorch::PytorchModel;

type Result<T> = std::result::Result<T, OnnxError>;

/// `key` without its last segment: the node scope (`fc1` for `fc1.weight`).
fn scope_of(key: &str) -> &str {
    key.rsplit_once('.').map_or(key, |(head, _)| head)
}

/// The batch dimension: fixed by the options or the symbol `batch`.
fn batch(options: &OnnxExportOptions) -> Dim {
    match options.batch_size {
        Some(n) => Dim::Value(n as i64),
        None => Dim::Param("batch".into()),
    }
}

/// The sequence dimension: fixed by the options or the symbol `sequence`.
fn sequence(options: &OnnxExportOptions) -> Dim {
    match options.sequence_length {
        Some(n) => Dim::Value(n as i64),
        None => Dim::Param("sequence".into()),
    }
}

fn fixed(n: usize) -> Dim {
    Dim::Value(n as i64)
}

fn graph_name(options: &OnnxExportOptions, model: &str) -> String {
    options
        .graph_name
        .clone()
        .unwrap_or_else(|| model.to_string())
}

/// `Gemm(x, W, b, transB=1)`: a linear layer on `[batch, in]` with PyTorch's `[out, in]`
/// weight.
fn gemm(b: &mut GraphBuilder, x: &str, weight: &str, bias: Option<&str>) -> Result<String> {
    let w = b.weight(weight)?;
    let mut inputs = vec![x.to_string(), w];
    if let Some(bias) = bias {
        inputs.push(b.weight(bias)?);
    }
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    Ok(b.node(
        scope_of(weight),
        "Gemm",
        &inputs,
        &[("transB", Attr::Int(1))],
    ))
}

/// A linear layer on any rank: `MatMul(x, Transpose(W)) + b`.
fn matmul(b: &mut GraphBuilder, x: &str, weight: &str, bias: Option<&str>) -> Result<String> {
    let scope = scope_of(weight).to_string();
    let w = b.weight(weight)?;
    let wt = b.node(
        &scope,
        "Transpose",
        &[&w],
        &[("perm", Attr::Ints(vec![1, 0]))],
    );
    let y = b.node(&scope, "MatMul", &[x, &wt], &[]);
    match bias {
        Some(bias) => {
            let bias = b.weight(bias)?;
            Ok(b.node(&scope, "Add", &[&y, &bias], &[]))
        }
        None => Ok(y),
    }
}

/// The checkpoint keys of the weight and bias of the Burn `Linear` at module path `path`.
fn linear_keys(b: &GraphBuilder, path: &str, linear: &Linear) -> Result<(String, Option<String>)> {
    let weight = b.key(&format!("{path}.weight"))?;
    let bias = match linear.bias {
        Some(_) => Some(b.key(&format!("{path}.bias"))?),
        None => None,
    };
    Ok((weight, bias))
}

// ---- MLP -------------------------------------------------------------------------------------

pub(crate) fn mlp(model: &Mlp, options: &OnnxExportOptions) -> Result<GraphProto> {
    let mut b = GraphBuilder::for_model("Mlp", model);
    if model.layers.is_empty() {
        return Err(b.unsupported("the MLP has no layers"));
    }
    let keys: Vec<_> = model
        .layers
        .iter()
        .enumerate()
        .map(|(i, layer)| linear_keys(&b, &format!("layers.{i}"), layer))
        .collect::<Result<_>>()?;
    let inputs = b.shape(&keys[0].0)?[1];
    let mut x = b.input(
        "input",
        data_type::FLOAT,
        vec![batch(options), fixed(inputs)],
    );
    let mut classes = 0;
    for (i, (weight, bias)) in keys.iter().enumerate() {
        x = gemm(&mut b, &x, weight, bias.as_deref())?;
        classes = b.shape(weight)?[0];
        if i + 1 < keys.len() {
            x = b.node(scope_of(weight), "Relu", &[&x], &[]);
        }
    }
    b.output(&x, "logits", vec![batch(options), fixed(classes)]);
    b.finish(&graph_name(options, "Mlp"))
}

// ---- CNN -------------------------------------------------------------------------------------

/// ONNX `pads` `[top, left, bottom, right]` for a Burn padding, which uses the same order.
fn pads(
    b: &GraphBuilder,
    what: &str,
    padding: &PaddingConfig2d,
    kernel: [usize; 2],
    stride: [usize; 2],
) -> Result<Vec<i64>> {
    match *padding {
        PaddingConfig2d::Valid => Ok(vec![0; 4]),
        PaddingConfig2d::Explicit(top, left, bottom, right) => {
            Ok([top, left, bottom, right].map(|p| p as i64).to_vec())
        }
        // Burn's `Same` pads `kernel - 1` in total for stride 1 (whatever the dilation), split
        // evenly when that is even; otherwise the padding depends on the input size.
        PaddingConfig2d::Same if stride == [1, 1] && kernel.iter().all(|k| k % 2 == 1) => {
            let [h, w] = kernel.map(|k| ((k - 1) / 2) as i64);
            Ok(vec![h, w, h, w])
        }
        PaddingConfig2d::Same => Err(b.unsupported(format!(
            "{what}: `Same` padding with kernel {kernel:?} and stride {stride:?} depends on \
             the input size; use explicit padding"
        ))),
    }
}

fn ints(values: [usize; 2]) -> Attr {
    Attr::Ints(values.map(|v| v as i64).to_vec())
}

/// Output size of a convolution or pooling window along one axis.
fn window_out(
    size: usize,
    pad: i64,
    kernel: usize,
    stride: usize,
    dilation: usize,
    ceil: bool,
) -> Option<usize> {
    let span = dilation
        .checked_mul(kernel.checked_sub(1)?)?
        .checked_add(1)?;
    let padded = size.checked_add(usize::try_from(pad).ok()?)?;
    let room = padded.checked_sub(span)?;
    let steps = if ceil {
        room.div_ceil(stride.max(1))
    } else {
        room / stride.max(1)
    };
    Some(steps + 1)
}

fn conv(
    b: &mut GraphBuilder,
    x: &str,
    name: &str,
    layer: &Conv2d,
    size: &mut Option<[usize; 2]>,
) -> Result<String> {
    let weight = b.weight(&b.key(&format!("{name}.weight"))?)?;
    let mut inputs = vec![x.to_string(), weight];
    if layer.bias.is_some() {
        inputs.push(b.weight(&b.key(&format!("{name}.bias"))?)?);
    }
    let pads = pads(b, name, &layer.padding, layer.kernel_size, layer.stride)?;
    if let Some([h, w]) = *size {
        let out = |axis: usize, s: usize| {
            window_out(
                s,
                pads[axis] + pads[axis + 2],
                layer.kernel_size[axis],
                layer.stride[axis],
                layer.dilation[axis],
                false,
            )
        };
        *size = out(0, h).zip(out(1, w)).map(|(h, w)| [h, w]);
    }
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    Ok(b.node(
        name,
        "Conv",
        &inputs,
        &[
            ("dilations", ints(layer.dilation)),
            ("group", Attr::Int(layer.groups as i64)),
            ("kernel_shape", ints(layer.kernel_size)),
            ("pads", Attr::Ints(pads)),
            ("strides", ints(layer.stride)),
        ],
    ))
}

fn max_pool(
    b: &mut GraphBuilder,
    x: &str,
    scope: &str,
    pool: &MaxPool2d,
    size: &mut Option<[usize; 2]>,
) -> Result<String> {
    let pads = pads(b, "pool", &pool.padding, pool.kernel_size, pool.stride)?;
    if let Some([h, w]) = *size {
        let out = |axis: usize, s: usize| {
            window_out(
                s,
                pads[axis] + pads[axis + 2],
                pool.kernel_size[axis],
                pool.stride[axis],
                pool.dilation[axis],
                pool.ceil_mode,
            )
        };
        *size = out(0, h).zip(out(1, w)).map(|(h, w)| [h, w]);
    }
    let mut attributes = vec![
        ("kernel_shape", ints(pool.kernel_size)),
        ("pads", Attr::Ints(pads)),
        ("strides", ints(pool.stride)),
    ];
    if pool.ceil_mode {
        attributes.push(("ceil_mode", Attr::Int(1)));
    }
    if pool.dilation != [1, 1] {
        attributes.push(("dilations", ints(pool.dilation)));
    }
    Ok(b.node(scope, "MaxPool", &[x], &attributes))
}

pub(crate) fn cnn(model: &Cnn, options: &OnnxExportOptions) -> Result<GraphProto> {
    let mut b = GraphBuilder::for_model("Cnn", model);
    let conv1 = b.shape(&b.key("conv1.weight")?)?;
    let channels = conv1[1] * model.conv1.groups;
    let spatial = |n: Option<usize>, name: &str| match n {
        Some(n) => fixed(n),
        None => Dim::Param(name.into()),
    };
    let image = options.image_size;
    let mut x = b.input(
        "images",
        data_type::FLOAT,
        vec![
            batch(options),
            fixed(channels),
            spatial(image.map(|s| s[0]), "height"),
            spatial(image.map(|s| s[1]), "width"),
        ],
    );
    let mut size = image;
    for (name, layer) in [
        ("conv1", &model.conv1),
        ("conv2", &model.conv2),
        ("conv3", &model.conv3),
    ] {
        x = conv(&mut b, &x, name, layer, &mut size)?;
        x = b.node(name, "Relu", &[&x], &[]);
        x = max_pool(&mut b, &x, name, &model.pool, &mut size)?;
    }
    let (fc1, fc1_bias) = linear_keys(&b, "fc1", &model.fc1)?;
    let (fc2, fc2_bias) = linear_keys(&b, "fc2", &model.fc2)?;
    if let Some(image) = image {
        let features = b.shape(&fc1)?[1];
        let channels = b.shape(&b.key("conv3.weight")?)?[0];
        let flat = size.map(|[h, w]| channels * h * w);
        if flat != Some(features) {
            return Err(b.unsupported(format!(
                "image size {image:?} gives {} features after the convolutions, but fc1 takes \
                 {features}",
                flat.map_or("no".to_string(), |n| n.to_string())
            )));
        }
    }
    x = b.node("flatten", "Flatten", &[&x], &[("axis", Attr::Int(1))]);
    x = gemm(&mut b, &x, &fc1, fc1_bias.as_deref())?;
    x = b.node("fc1", "Relu", &[&x], &[]);
    x = gemm(&mut b, &x, &fc2, fc2_bias.as_deref())?;
    let classes = b.shape(&fc2)?[0];
    b.output(&x, "logits", vec![batch(options), fixed(classes)]);
    b.finish(&graph_name(options, "Cnn"))
}

// ---- LSTM ------------------------------------------------------------------------------------

/// Reorder PyTorch's gate blocks (i, f, g, o) along axis 0 into ONNX's (i, o, f, c).
fn gates_iofc(b: &mut GraphBuilder, scope: &str, value: &str) -> String {
    let parts = b.node_n(scope, "Split", &[value], &[("axis", Attr::Int(0))], 4);
    let [i, f, g, o] = [0, 1, 2, 3].map(|k| parts.get(k).cloned().unwrap_or_default());
    b.node(
        scope,
        "Concat",
        &[&i, &o, &f, &g],
        &[("axis", Attr::Int(0))],
    )
}

fn lstm_layer(
    b: &mut GraphBuilder,
    x: &str,
    k: usize,
    layer: &LstmLayer,
    hidden: usize,
    last: bool,
) -> Result<String> {
    let path = |b: &GraphBuilder, name: &str| b.key(&format!("lstm.layers.{k}.{name}"));
    let scope = format!("lstm/l{k}");
    let axis0 = b.ints(&scope, &[0]);
    let w = b.weight(&path(b, "weight_ih")?)?;
    let w = gates_iofc(b, &scope, &w);
    let w = b.node(&scope, "Unsqueeze", &[&w, &axis0], &[]);
    let r = b.weight(&path(b, "weight_hh")?)?;
    let r = gates_iofc(b, &scope, &r);
    let r = b.node(&scope, "Unsqueeze", &[&r, &axis0], &[]);
    let mut inputs = vec![x.to_string(), w, r];
    if layer.bias_ih.is_some() || layer.bias_hh.is_some() {
        // ONNX's B is [Wb; Rb]: both biases, each in ONNX gate order.
        let mut halves = Vec::with_capacity(2);
        for (name, present) in [
            ("bias_ih", layer.bias_ih.is_some()),
            ("bias_hh", layer.bias_hh.is_some()),
        ] {
            let bias = if present {
                let bias = b.weight(&path(b, name)?)?;
                gates_iofc(b, &scope, &bias)
            } else {
                b.floats(&scope, &vec![0.0; 4 * hidden], &[4 * hidden])
            };
            halves.push(bias);
        }
        let bias = b.node(
            &scope,
            "Concat",
            &[&halves[0], &halves[1]],
            &[("axis", Attr::Int(0))],
        );
        inputs.push(b.node(&scope, "Unsqueeze", &[&bias, &axis0], &[]));
    }
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let attributes = [
        ("direction", Attr::Str("forward")),
        ("hidden_size", Attr::Int(hidden as i64)),
    ];
    if last {
        // Y_h [1, batch, hidden] is the output of the last time step (unidirectional).
        let outputs = b.node_n(&scope, "LSTM", &inputs, &attributes, 2);
        let y_h = outputs.get(1).cloned().unwrap_or_default();
        Ok(b.node(&scope, "Squeeze", &[&y_h, &axis0], &[]))
    } else {
        // Y [time, 1, batch, hidden] -> [time, batch, hidden], the next layer's input.
        let y = b.node(&scope, "LSTM", &inputs, &attributes);
        let axis1 = b.ints(&scope, &[1]);
        Ok(b.node(&scope, "Squeeze", &[&y, &axis1], &[]))
    }
}

pub(crate) fn lstm(model: &LstmClassifier, options: &OnnxExportOptions) -> Result<GraphProto> {
    lstm_then_linear(
        model,
        &model.lstm,
        ("fc", &model.fc),
        "logits",
        "LstmClassifier",
        options,
    )
}

pub(crate) fn lstm_forecaster(
    model: &LstmForecaster,
    options: &OnnxExportOptions,
) -> Result<GraphProto> {
    lstm_then_linear(
        model,
        &model.lstm,
        ("head", &model.head),
        "forecast",
        "LstmForecaster",
        options,
    )
}

/// The graph shared by the LSTM classifier and forecaster: `sequences` `[batch, sequence,
/// features]`, one `LSTM` node per layer, then a `Gemm` (the linear layer at module path
/// `linear.0`) on the last time step, as output `output`.
fn lstm_then_linear<M: PytorchModel>(
    model: &M,
    lstm: &Lstm,
    linear: (&str, &Linear),
    output: &str,
    name: &str,
    options: &OnnxExportOptions,
) -> Result<GraphProto> {
    let mut b = GraphBuilder::for_model(name, model);
    if lstm.bidirectional {
        return Err(b.unsupported("a bidirectional LSTM (the models' LSTMs are unidirectional)"));
    }
    if !lstm.batch_first {
        return Err(b.unsupported("an LSTM that is not batch-first (the models' are)"));
    }
    if lstm.layers.is_empty() {
        return Err(b.unsupported("the LSTM has no layers"));
    }
    let x = b.input(
        "sequences",
        data_type::FLOAT,
        vec![batch(options), sequence(options), fixed(lstm.input_size)],
    );
    // ONNX's LSTM reads [time, batch, features] (layout 0, which every runtime supports).
    let mut x = b.node(
        "lstm",
        "Transpose",
        &[&x],
        &[("perm", Attr::Ints(vec![1, 0, 2]))],
    );
    let count = lstm.layers.len();
    for (k, layer) in lstm.layers.iter().enumerate() {
        x = lstm_layer(&mut b, &x, k, layer, lstm.hidden_size, k + 1 == count)?;
    }
    let (weight, bias) = linear_keys(&b, linear.0, linear.1)?;
    x = gemm(&mut b, &x, &weight, bias.as_deref())?;
    let width = b.shape(&weight)?[0];
    b.output(&x, output, vec![batch(options), fixed(width)]);
    b.finish(&graph_name(options, name))
}

// ---- Transformer -----------------------------------------------------------------------------

/// The epsilon of a Burn `LayerNorm`, which keeps it private; its module display prints it
/// (`LayerNorm {d_model: 64, epsilon: 0.00001, ...}`) with Rust's round-trip float format.
pub(crate) fn layer_norm_epsilon(norm: &LayerNorm) -> Option<f64> {
    let text = norm.to_string();
    let start = text.find("epsilon: ")? + "epsilon: ".len();
    let rest = &text[start..];
    let end = rest.find([',', '}', ' ']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn layer_norm(b: &mut GraphBuilder, x: &str, path: &str, norm: &LayerNorm) -> Result<String> {
    let epsilon = layer_norm_epsilon(norm)
        .ok_or_else(|| b.unsupported(format!("cannot read the epsilon of {path}")))?;
    let scale = b.weight(&b.key(&format!("{path}.gamma"))?)?;
    let mut inputs = vec![x.to_string(), scale];
    if norm.beta.is_some() {
        inputs.push(b.weight(&b.key(&format!("{path}.beta"))?)?);
    }
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    Ok(b.node(
        path,
        "LayerNormalization",
        &inputs,
        &[
            ("axis", Attr::Int(-1)),
            ("epsilon", Attr::Float(epsilon as f32)),
        ],
    ))
}

/// Self-attention of `x` `[batch, seq, d]` as PyTorch's `nn.MultiheadAttention` computes it.
fn attention(
    b: &mut GraphBuilder,
    x: &str,
    path: &str,
    block: &TransformerBlock,
) -> Result<String> {
    let attention = &block.attention;
    let d = attention.embed_dim();
    let heads = attention.num_heads;
    let head_dim = attention.head_dim();
    let scope = format!("{path}/attention");
    let k = |b: &GraphBuilder, name: &str| b.key(&format!("{path}.attention.{name}"));
    let bias = match attention.in_proj_bias {
        Some(_) => Some(k(b, "in_proj_bias")?),
        None => None,
    };
    let weight = k(b, "in_proj_weight")?;
    let qkv = matmul(b, x, &weight, bias.as_deref())?;
    let parts = b.node_n(&scope, "Split", &[&qkv], &[("axis", Attr::Int(2))], 3);
    let [q, kk, v] = [0, 1, 2].map(|i| parts.get(i).cloned().unwrap_or_default());
    // PyTorch scales q by 1/sqrt(head_dim) before the product, in f32.
    let scale = b.floats(&scope, &[(1.0 / head_dim as f64).sqrt() as f32], &[]);
    let q = b.node(&scope, "Mul", &[&q, &scale], &[]);
    let heads_shape = b.ints(&scope, &[0, 0, heads as i64, head_dim as i64]);
    let split = |b: &mut GraphBuilder, value: &str, perm: Vec<i64>| {
        let r = b.node(&scope, "Reshape", &[value, &heads_shape], &[]);
        b.node(&scope, "Transpose", &[&r], &[("perm", Attr::Ints(perm))])
    };
    let q = split(b, &q, vec![0, 2, 1, 3]); // [B, h, T, hd]
    let kt = split(b, &kk, vec![0, 2, 3, 1]); // [B, h, hd, T]
    let v = split(b, &v, vec![0, 2, 1, 3]); // [B, h, T, hd]
    let scores = b.node(&scope, "MatMul", &[&q, &kt], &[]);
    let weights = b.node(&scope, "Softmax", &[&scores], &[("axis", Attr::Int(-1))]);
    let out = b.node(&scope, "MatMul", &[&weights, &v], &[]);
    let out = b.node(
        &scope,
        "Transpose",
        &[&out],
        &[("perm", Attr::Ints(vec![0, 2, 1, 3]))],
    );
    let model_shape = b.ints(&scope, &[0, 0, d as i64]);
    let out = b.node(&scope, "Reshape", &[&out, &model_shape], &[]);
    let (w, bias) = linear_keys(
        b,
        &format!("{path}.attention.out_proj"),
        &attention.out_proj,
    )?;
    matmul(b, &out, &w, bias.as_deref())
}

fn feed_forward(
    b: &mut GraphBuilder,
    x: &str,
    path: &str,
    block: &TransformerBlock,
) -> Result<String> {
    let ff = &block.feed_forward;
    let (w1, b1) = linear_keys(b, &format!("{path}.feed_forward.linear1"), &ff.linear1)?;
    let (w2, b2) = linear_keys(b, &format!("{path}.feed_forward.linear2"), &ff.linear2)?;
    let h = matmul(b, x, &w1, b1.as_deref())?;
    let h = b.node(scope_of(&w1), "Relu", &[&h], &[]);
    matmul(b, &h, &w2, b2.as_deref())
}

fn block(b: &mut GraphBuilder, x: &str, i: usize, block: &TransformerBlock) -> Result<String> {
    let path = format!("transformer_blocks.{i}");
    let norm1 = format!("{path}.norm1");
    let norm2 = format!("{path}.norm2");
    if block.norm_first {
        let h = layer_norm(b, x, &norm1, &block.norm1)?;
        let a = attention(b, &h, &path, block)?;
        let x = b.node(&path, "Add", &[x, &a], &[]);
        let h = layer_norm(b, &x, &norm2, &block.norm2)?;
        let f = feed_forward(b, &h, &path, block)?;
        Ok(b.node(&path, "Add", &[&x, &f], &[]))
    } else {
        let a = attention(b, x, &path, block)?;
        let x = b.node(&path, "Add", &[x, &a], &[]);
        let x = layer_norm(b, &x, &norm1, &block.norm1)?;
        let f = feed_forward(b, &x, &path, block)?;
        let x = b.node(&path, "Add", &[&x, &f], &[]);
        layer_norm(b, &x, &norm2, &block.norm2)
    }
}

pub(crate) fn transformer(
    model: &TransformerClassifier,
    options: &OnnxExportOptions,
) -> Result<GraphProto> {
    let mut b = GraphBuilder::for_model("TransformerClassifier", model);
    let table = &model.pos_encoding;
    let (max_len, d) = (table.max_seq_length(), table.d_model());
    if let Some(t) = options.sequence_length
        && t > max_len
    {
        return Err(b.unsupported(format!(
            "sequence_length {t} is longer than the positional table (max_seq_length {max_len})"
        )));
    }
    let (input, x) = match (&model.embedding, &model.patch_embedding) {
        (Some(_), _) => {
            let tokens = b.input(
                "tokens",
                data_type::INT64,
                vec![batch(options), sequence(options)],
            );
            let table = b.weight(&b.key("embedding.weight")?)?;
            let x = b.node(
                "embedding",
                "Gather",
                &[&table, &tokens],
                &[("axis", Attr::Int(0))],
            );
            (tokens, x)
        }
        (None, Some(linear)) => {
            let (w, bias) = linear_keys(&b, "patch_embedding", linear)?;
            let features = b.shape(&w)?[1];
            let patches = b.input(
                "patches",
                data_type::FLOAT,
                vec![batch(options), sequence(options), fixed(features)],
            );
            let x = matmul(&mut b, &patches, &w, bias.as_deref())?;
            (patches, x)
        }
        (None, None) => return Err(b.unsupported("the model has no embedding")),
    };
    // x + pe[:seq]: the table is a constant (not a parameter, as in PyTorch), sliced to the
    // input's sequence length so that the length may vary.
    let values = table
        .table()
        .into_data()
        .try_to_vec_as::<f32>()
        .map_err(|e| b.unsupported(format!("cannot read the positional table: {e:?}")))?;
    let pe = b.floats("pos_encoding", &values, &[max_len, d]);
    let length = b.node(
        "pos_encoding",
        "Shape",
        &[&input],
        &[("start", Attr::Int(1)), ("end", Attr::Int(2))],
    );
    let zero = b.ints("pos_encoding", &[0]);
    let pe = b.node("pos_encoding", "Slice", &[&pe, &zero, &length, &zero], &[]);
    let mut x = b.node("pos_encoding", "Add", &[&x, &pe], &[]);
    for (i, layer) in model.transformer_blocks.iter().enumerate() {
        x = block(&mut b, &x, i, layer)?;
    }
    x = b.node(
        "mean",
        "ReduceMean",
        &[&x],
        &[("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(0))],
    );
    let (fc, fc_bias) = linear_keys(&b, "fc", &model.fc)?;
    x = gemm(&mut b, &x, &fc, fc_bias.as_deref())?;
    let classes = b.shape(&fc)?[0];
    b.output(&x, "logits", vec![batch(options), fixed(classes)]);
    b.finish(&graph_name(options, "TransformerClassifier"))
}

// ---- ScratchMlp ------------------------------------------------------------------------------

pub(crate) fn scratch(model: &ScratchMlp, options: &OnnxExportOptions) -> Result<GraphProto> {
    let mut b = GraphBuilder::for_model("ScratchMlp", model);
    let layers = model.weights.len();
    if layers == 0 || model.biases.len() != layers {
        return Err(b.unsupported(format!(
            "{layers} weight(s) and {} bias(es); expected at least one layer and as many \
             biases as weights",
            model.biases.len()
        )));
    }
    let inputs = b.shape(&b.key("weights.0")?)?[1];
    let mut x = b.input(
        "input",
        data_type::FLOAT,
        vec![batch(options), fixed(inputs)],
    );
    for l in 0..layers {
        let weight = b.key(&format!("weights.{l}"))?;
        let bias = b.key(&format!("biases.{l}"))?;
        x = gemm(&mut b, &x, &weight, Some(&bias))?;
        let scope = format!("layers.{l}");
        let op = if l + 1 == layers {
            match model.output {
                ScratchOutput::Sigmoid => Some("Sigmoid"),
                ScratchOutput::Softmax => Some("Softmax"),
            }
        } else {
            match model.activation {
                ScratchActivation::Relu => Some("Relu"),
                ScratchActivation::Sigmoid => Some("Sigmoid"),
                ScratchActivation::Tanh => Some("Tanh"),
                ScratchActivation::Identity => None,
            }
        };
        if let Some(op) = op {
            let attributes: &[(&str, Attr)] = if op == "Softmax" {
                &[("axis", Attr::Int(-1))]
            } else {
                &[]
            };
            x = b.node(&scope, op, &[&x], attributes);
        }
    }
    let classes = b.shape(&b.key(&format!("weights.{}", layers - 1))?)?[0];
    b.output(&x, "probabilities", vec![batch(options), fixed(classes)]);
    b.finish(&graph_name(options, "ScratchMlp"))
}
