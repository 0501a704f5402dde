//! Reading the initializers of an ONNX model into a [`StateDict`].

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::TensorData;

use super::error::OnnxError;
use super::proto::{Graph, Model, Tensor, data_type};
use super::torch_names;
use crate::dtype::{ByteOrder, FloatDtype, float_tensor};
use crate::state_dict::StateDict;

impl StateDict {
    /// Read the weights of an ONNX model: every floating-point initializer, under its name.
    ///
    /// Files written by [`export_onnx`](crate::export_onnx) hold exactly the model's PyTorch
    /// state dict; files from `torch.onnx.export` hold the parameters under their state-dict
    /// names where the exporter kept them (see [`StateDict::from_onnx_bytes`]). The result
    /// loads with [`load_pytorch_state_dict`](crate::load_pytorch_state_dict).
    ///
    /// ```no_run
    /// use dl_io::{LoadMode, StateDict, load_pytorch_state_dict};
    /// let device = dl_core::BackendKind::Flex.device()?;
    /// let model = dl_models::MlpConfig::new().init(&device)?;
    /// // torch.onnx.export(model, x, "mlp.onnx", dynamo=False)
    /// let weights = StateDict::from_onnx_file("mlp.onnx")?;
    /// let (model, report) = load_pytorch_state_dict(model, &weights, LoadMode::Strict)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_onnx_file(path: impl AsRef<Path>) -> Result<Self, OnnxError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_onnx_bytes(&bytes, path.display().to_string())
    }

    /// Parse the bytes of an ONNX model (`ModelProto`); `source` names them in messages.
    ///
    /// * FLOAT, DOUBLE, FLOAT16 and BFLOAT16 initializers become f32 tensors (conversions are
    ///   noted in [`StateDict::notes`]), read from `raw_data` or the typed fields.
    /// * Integer and boolean initializers (shapes, indices) are not weights: they are left
    ///   out, with a note.
    /// * An `Identity` node whose input is a weight gives it a second name:
    ///   `torch.onnx.export` stores equal parameters once and names the others this way.
    /// * Weights that `torch.onnx.export` (TorchScript exporter) stored under generated
    ///   `onnx::…` names get their PyTorch names back where the graph tells them: the
    ///   transposed weight of a `MatMul` followed by an `Add` of `P.bias` is `P.weight`, and
    ///   the W, R, B inputs of the k-th `LSTM` node in scope `/lstm/` are
    ///   `lstm.weight_ih_lk`, `lstm.weight_hh_lk`, `lstm.bias_ih_lk`, `lstm.bias_hh_lk`, with
    ///   the gates put back in PyTorch's order. Each renaming is noted.
    /// * Weights in external files, and data that does not fill the declared shape, are
    ///   [`OnnxError::Initializer`] errors naming the initializer.
    ///
    /// The decoder never allocates by a length it read before checking it against the
    /// bytes that remain; anything that is not an ONNX model is [`OnnxError::Decode`].
    ///
    /// ```
    /// let err = dl_io::StateDict::from_onnx_bytes(b"not onnx", "x.onnx").unwrap_err();
    /// assert!(err.to_string().starts_with("x.onnx: not a valid ONNX model"));
    /// ```
    pub fn from_onnx_bytes(bytes: &[u8], source: impl Into<String>) -> Result<Self, OnnxError> {
        let source = source.into();
        let decode = |reason: String| OnnxError::Decode {
            path: source.clone(),
            reason,
        };
        if bytes.is_empty() {
            return Err(decode("the file is empty (0 bytes)".into()));
        }
        let model = Model::decode(bytes).map_err(decode)?;
        let Some(graph) = model.graph else {
            return Err(decode(
                "it has no graph (ModelProto field 7); expected an ONNX model".into(),
            ));
        };
        read_initializers(&graph, &source)
    }
}

fn read_initializers(graph: &Graph, source: &str) -> Result<StateDict, OnnxError> {
    let mut state = StateDict::new(source);
    let mut skipped = Vec::new();
    for tensor in &graph.initializer {
        let error = |reason: String| OnnxError::Initializer {
            path: source.to_string(),
            name: tensor.name.clone(),
            reason,
        };
        if tensor.name.is_empty() {
            return Err(error("an initializer has no name".into()));
        }
        if state.tensors.contains_key(&tensor.name) || skipped.contains(&tensor.name) {
            return Err(error("the name is used by two initializers".into()));
        }
        match tensor_data(tensor).map_err(error)? {
            Some((data, dtype, note)) => {
                state.record_dtype(&tensor.name, dtype);
                state.notes.extend(note);
                state.tensors.insert(tensor.name.clone(), data);
            }
            None => skipped.push(tensor.name.clone()),
        }
    }
    if !skipped.is_empty() {
        state.notes.push(format!(
            "skipped {} non-float initializer(s) (shapes, indices): {}",
            skipped.len(),
            skipped.join(", ")
        ));
    }
    add_identity_aliases(graph, &mut state);
    torch_names::recover(graph, &mut state);
    Ok(state)
}

/// `torch.onnx.export` keeps one copy of equal parameters and names the others with
/// `Identity` nodes (`norm2.weight = Identity(norm1.weight)`); give each its own entry.
fn add_identity_aliases(graph: &Graph, state: &mut StateDict) {
    let mut aliases = BTreeMap::new();
    for node in &graph.node {
        if node.op_type != "Identity" || !node.domain.is_empty() {
            continue;
        }
        let (Some(input), Some(output)) = (node.input.first(), node.output.first()) else {
            continue;
        };
        if let Some(data) = state.tensors.get(input)
            && !state.tensors.contains_key(output)
        {
            aliases.insert(output.clone(), (input.clone(), data.clone()));
        }
    }
    for (name, (from, data)) in aliases {
        state
            .notes
            .push(format!("`{name}` is `{from}` (an Identity node)"));
        state.tensors.insert(name, data);
    }
}

/// The initializer as f32 data with an optional conversion note, or `None` for non-float
/// types.
fn tensor_data(
    tensor: &Tensor,
) -> Result<Option<(TensorData, FloatDtype, Option<String>)>, String> {
    if tensor.data_location == 1 || tensor.has_external_data {
        return Err(
            "its data is in an external file (save the model with the weights inside)".into(),
        );
    }
    let dtype = match tensor.data_type {
        data_type::FLOAT => FloatDtype::F32,
        data_type::DOUBLE => FloatDtype::F64,
        data_type::FLOAT16 => FloatDtype::F16,
        data_type::BFLOAT16 => FloatDtype::BF16,
        // Integer, boolean and string tensors: shapes, indices, labels.
        other if (2..=13).contains(&other) => return Ok(None),
        other => {
            return Err(format!(
                "it has {}; expected a floating-point or integer type",
                data_type::name(other)
            ));
        }
    };
    let shape = tensor
        .dims
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| format!("negative dimension {d} in {:?}", tensor.dims))
        })
        .collect::<Result<Vec<usize>, String>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} has too many elements"))?;
    let name = &tensor.name;
    if !tensor.raw_data.is_empty() {
        return float_tensor(name, &tensor.raw_data, &shape, dtype, ByteOrder::Little)
            .map(|(data, note)| Some((data, dtype, note)));
    }
    let (values, stored): (Vec<f32>, usize) = match dtype {
        FloatDtype::F32 => (tensor.float_data.clone(), tensor.float_data.len()),
        FloatDtype::F64 => (
            tensor.double_data.iter().map(|&v| v as f32).collect(),
            tensor.double_data.len(),
        ),
        // FLOAT16 and BFLOAT16 values are stored as their bits in `int32_data`.
        FloatDtype::F16 | FloatDtype::BF16 => {
            let bits: Vec<u8> = tensor
                .int32_data
                .iter()
                .flat_map(|&v| (v as u16).to_le_bytes())
                .collect();
            return float_tensor(name, &bits, &shape, dtype, ByteOrder::Little)
                .map(|(data, note)| Some((data, dtype, note)));
        }
    };
    if stored != count {
        return Err(format!(
            "shape {shape:?} needs {count} values but {stored} are stored"
        ));
    }
    let note = (dtype != FloatDtype::F32)
        .then(|| format!("`{name}` converted from {} to F32", dtype.name()));
    Ok(Some((TensorData::new(values, shape), dtype, note)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::onnx::proto::{Model, Node};

    fn model_with(initializer: Vec<Tensor>, node: Vec<Node>) -> Vec<u8> {
        Model {
            ir_version: 8,
            graph: Some(Graph {
                initializer,
                node,
                ..Graph::default()
            }),
            ..Model::default()
        }
        .encode()
    }

    fn float(name: &str, dims: Vec<i64>, values: &[f32]) -> Tensor {
        Tensor {
            name: name.into(),
            dims,
            data_type: data_type::FLOAT,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Tensor::default()
        }
    }

    #[test]
    fn every_float_encoding_is_read() {
        let bytes = model_with(
            vec![
                float("raw", vec![2, 1], &[1.0, -2.0]),
                Tensor {
                    name: "typed".into(),
                    dims: vec![2],
                    data_type: data_type::FLOAT,
                    float_data: vec![0.5, 3.0],
                    ..Tensor::default()
                },
                Tensor {
                    name: "double".into(),
                    dims: vec![1],
                    data_type: data_type::DOUBLE,
                    double_data: vec![0.25],
                    ..Tensor::default()
                },
                // FLOAT16 -1.5 = 0xBE00, stored as int32 bits.
                Tensor {
                    name: "half".into(),
                    dims: vec![1],
                    data_type: data_type::FLOAT16,
                    int32_data: vec![0xBE00],
                    ..Tensor::default()
                },
                Tensor {
                    name: "shape".into(),
                    dims: vec![2],
                    data_type: data_type::INT64,
                    int64_data: vec![1, -1],
                    ..Tensor::default()
                },
            ],
            vec![],
        );
        let state = StateDict::from_onnx_bytes(&bytes, "m.onnx").unwrap();
        let values = |k: &str| state.get(k).unwrap().try_to_vec::<f32>().unwrap();
        assert_eq!(values("raw"), [1.0, -2.0]);
        assert_eq!(state.get("raw").unwrap().shape().to_vec(), [2, 1]);
        assert_eq!(values("typed"), [0.5, 3.0]);
        assert_eq!(values("double"), [0.25]);
        assert_eq!(values("half"), [-1.5]);
        assert!(state.get("shape").is_none());
        assert_eq!(state.len(), 4);
        assert!(
            state
                .notes()
                .iter()
                .any(|n| n.contains("skipped 1") && n.contains("shape"))
        );
        assert!(
            state
                .notes()
                .iter()
                .any(|n| n.contains("`double` converted from F64"))
        );
        assert_eq!(state.source(), "m.onnx");
    }

    #[test]
    fn identity_nodes_name_shared_weights() {
        let bytes = model_with(
            vec![float("norm1.weight", vec![1], &[1.0])],
            vec![Node {
                op_type: "Identity".into(),
                input: vec!["norm1.weight".into()],
                output: vec!["norm2.weight".into()],
                ..Node::default()
            }],
        );
        let state = StateDict::from_onnx_bytes(&bytes, "m").unwrap();
        assert_eq!(
            state.keys().collect::<Vec<_>>(),
            ["norm1.weight", "norm2.weight"]
        );
        for key in ["norm1.weight", "norm2.weight"] {
            let data = state.get(key).unwrap();
            assert_eq!(data.shape().to_vec(), [1], "{key}");
            assert_eq!(data.try_to_vec::<f32>().unwrap(), [1.0], "{key}");
        }
    }

    #[test]
    fn bad_initializers_are_named() {
        let cases = [
            (float("w", vec![3], &[1.0]), "shape [3] of F32 but 4 bytes"),
            (float("w", vec![-1], &[1.0]), "negative dimension"),
            (
                Tensor {
                    data_location: 1,
                    ..float("w", vec![1], &[1.0])
                },
                "external file",
            ),
            (
                Tensor {
                    data_type: 14,
                    ..float("w", vec![1], &[])
                },
                "COMPLEX64",
            ),
            (
                Tensor {
                    raw_data: vec![],
                    ..float("w", vec![2], &[])
                },
                "needs 2 values but 0",
            ),
        ];
        for (tensor, expected) in cases {
            let bytes = model_with(vec![tensor], vec![]);
            let err = StateDict::from_onnx_bytes(&bytes, "m.onnx").unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with("m.onnx: initializer `w`: ") && text.contains(expected),
                "{text}"
            );
        }
        let twice = model_with(
            vec![float("w", vec![1], &[1.0]), float("w", vec![1], &[2.0])],
            vec![],
        );
        let err = StateDict::from_onnx_bytes(&twice, "m").unwrap_err();
        assert!(err.to_string().contains("two initializers"), "{err}");
    }

    #[test]
    fn non_onnx_bytes_are_decode_errors() {
        for (bytes, expected) in [
            (&b""[..], "empty"),
            (&b"{\"a\": 1}"[..], "not a valid ONNX model"),
            (&[0x08, 0x08][..], "no graph"),
            (&[0x3a, 0x05, 0x0a][..], "runs past the end"),
        ] {
            let err = StateDict::from_onnx_bytes(bytes, "f.bin").unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(err, OnnxError::Decode { .. }) && text.contains(expected),
                "{text}"
            );
            assert!(text.starts_with("f.bin: "), "{text}");
        }
    }
}
