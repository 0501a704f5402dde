//! Reading the initializers of an ONNX model into a [`StateDict`].

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::TensorData;
use onnx_ir::{GraphProto, Message, ModelProto, TensorProto};

use super::builder::data_type;
use super::error::OnnxError;
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
    /// The bytes are parsed by the `protobuf` crate (through onnx-ir), which checks every
    /// length it reads against the bytes that remain, caps what it reserves ahead, and stops
    /// at a nesting depth of 100; anything that is not an ONNX model is
    /// [`OnnxError::Decode`].
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
        let model = ModelProto::parse_from_bytes(bytes).map_err(|e| {
            decode(format!(
                "its bytes do not parse as a protobuf ModelProto ({e})"
            ))
        })?;
        let Some(graph) = model.graph.as_ref() else {
            return Err(decode(
                "it has no graph (ModelProto.graph); expected an ONNX model".into(),
            ));
        };
        read_initializers(graph, &source)
    }
}

fn read_initializers(graph: &GraphProto, source: &str) -> Result<StateDict, OnnxError> {
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
fn add_identity_aliases(graph: &GraphProto, state: &mut StateDict) {
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
    tensor: &TensorProto,
) -> Result<Option<(TensorData, FloatDtype, Option<String>)>, String> {
    // `DataLocation::EXTERNAL` is 1 (the enum is not re-exported by onnx-ir).
    if tensor.data_location.value() == 1 || !tensor.external_data.is_empty() {
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
    use crate::onnx::builder::{f32_tensor, tensor};
    use onnx_ir::NodeProto;

    fn model_with(initializer: Vec<TensorProto>, node: Vec<NodeProto>) -> Vec<u8> {
        let mut graph = GraphProto::new();
        graph.initializer = initializer;
        graph.node = node;
        let mut model = ModelProto::new();
        model.ir_version = 8;
        model.graph = Some(graph).into();
        model.write_to_bytes().unwrap()
    }

    fn float(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
        f32_tensor(name, dims, values)
    }

    #[test]
    fn every_float_encoding_is_read() {
        let mut typed = tensor("typed", &[2], data_type::FLOAT);
        typed.float_data = vec![0.5, 3.0];
        let mut double = tensor("double", &[1], data_type::DOUBLE);
        double.double_data = vec![0.25];
        // FLOAT16 -1.5 = 0xBE00, stored as int32 bits.
        let mut half = tensor("half", &[1], data_type::FLOAT16);
        half.int32_data = vec![0xBE00];
        let mut shape = tensor("shape", &[2], data_type::INT64);
        shape.int64_data = vec![1, -1];
        let bytes = model_with(
            vec![
                float("raw", &[2, 1], &[1.0, -2.0]),
                typed,
                double,
                half,
                shape,
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
        let mut identity = NodeProto::new();
        identity.op_type = "Identity".into();
        identity.input = vec!["norm1.weight".into()];
        identity.output = vec!["norm2.weight".into()];
        let bytes = model_with(vec![float("norm1.weight", &[1], &[1.0])], vec![identity]);
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
        let mut negative = float("w", &[1], &[1.0]);
        negative.dims = vec![-1];
        // `data_location: EXTERNAL` (field 14 = 1, appended: the enum is not re-exported),
        // and an `external_data` entry without it.
        let mut location = float("w", &[1], &[1.0]).write_to_bytes().unwrap();
        location.extend([14 << 3, 1]);
        let location = TensorProto::parse_from_bytes(&location).unwrap();
        let mut entries = float("w", &[1], &[1.0]);
        entries.external_data.push(Default::default());
        let mut complex = float("w", &[1], &[]);
        complex.data_type = 14;
        let cases = [
            (float("w", &[3], &[1.0]), "shape [3] of F32 but 4 bytes"),
            (negative, "negative dimension"),
            (location, "external file"),
            (entries, "external file"),
            (complex, "COMPLEX64"),
            (float("w", &[2], &[]), "needs 2 values but 0"),
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
            vec![float("w", &[1], &[1.0]), float("w", &[1], &[2.0])],
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
            // ModelProto.graph claiming 5 bytes with 1 present.
            (
                &[0x3a, 0x05, 0x0a][..],
                "do not parse as a protobuf ModelProto",
            ),
            // A length that overflows: ten bytes of varint.
            (
                &[
                    0x3a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ][..],
                "ModelProto",
            ),
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

    #[test]
    fn deeply_nested_graphs_stop_at_the_recursion_limit() {
        // An `If` whose `then_branch` graph holds an `If` whose …: 200 levels, each a
        // GraphProto inside a NodeProto inside an AttributeProto.
        let mut graph = GraphProto::new();
        for _ in 0..200 {
            let mut attribute = onnx_ir::AttributeProto::new();
            attribute.name = "then_branch".into();
            attribute.g = Some(graph).into();
            let mut node = NodeProto::new();
            node.op_type = "If".into();
            node.attribute.push(attribute);
            graph = GraphProto::new();
            graph.node.push(node);
        }
        let mut model = ModelProto::new();
        model.graph = Some(graph).into();
        let bytes = model.write_to_bytes().unwrap();
        let err = StateDict::from_onnx_bytes(&bytes, "deep.onnx").unwrap_err();
        assert!(matches!(err, OnnxError::Decode { .. }), "{err}");
        assert!(err.to_string().contains("recursion limit"), "{err}");
    }
}
