//! Building an ONNX graph node by node: unique value names, constants, and the model's
//! weights as initializers under their PyTorch state-dict names; and the few helpers that
//! fill onnx-ir's generated protobuf messages (tensors, attributes, typed values).

use std::collections::{BTreeMap, BTreeSet};

use burn::tensor::TensorData;
use onnx_ir::{AttributeProto, AttributeType, GraphProto, NodeProto, TensorProto, ValueInfoProto};

use super::error::OnnxError;
use crate::pytorch::{PytorchModel, export_keys, to_pytorch_state_dict};
use crate::state_dict::StateDict;

/// `TensorProto.DataType` values. The field is a plain `int32` in `onnx.proto` and onnx-ir
/// does not re-export the generated enum, so the values the graphs and the reader need are
/// named here.
pub(crate) mod data_type {
    pub(crate) const FLOAT: i32 = 1;
    pub(crate) const INT64: i32 = 7;
    pub(crate) const FLOAT16: i32 = 10;
    pub(crate) const DOUBLE: i32 = 11;
    pub(crate) const BFLOAT16: i32 = 16;

    /// The data type's name in `onnx.proto`, for messages.
    pub(crate) fn name(value: i32) -> String {
        let name = match value {
            0 => "UNDEFINED",
            1 => "FLOAT",
            2 => "UINT8",
            3 => "INT8",
            4 => "UINT16",
            5 => "INT16",
            6 => "INT32",
            7 => "INT64",
            8 => "STRING",
            9 => "BOOL",
            10 => "FLOAT16",
            11 => "DOUBLE",
            12 => "UINT32",
            13 => "UINT64",
            14 => "COMPLEX64",
            15 => "COMPLEX128",
            16 => "BFLOAT16",
            other => return format!("data type {other}"),
        };
        name.to_string()
    }
}

/// One dimension of a graph input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dim {
    /// A fixed size.
    Value(i64),
    /// A named size that varies (`"batch"`).
    Param(String),
}

/// An attribute of a node, by value.
#[derive(Debug, Clone)]
pub(crate) enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Str(&'static str),
}

/// Accumulates the nodes of one graph.
///
/// Every weight comes from `state`, the model's PyTorch state dict, and is added as an
/// initializer the first time a node uses it; [`GraphBuilder::finish`] checks that every
/// tensor of the state dict was used, so a parameter the graph forgot is an error rather than
/// a silently different model.
pub(crate) struct GraphBuilder {
    model: String,
    state: StateDict,
    /// Each weight's key in `state`, by its Burn module path.
    keys: BTreeMap<String, String>,
    graph: GraphProto,
    used: BTreeSet<String>,
    names: BTreeSet<String>,
}

impl GraphBuilder {
    /// A builder for `model` (its type name, for messages) whose weights are `state`.
    pub(crate) fn new(model: &str, state: StateDict) -> Self {
        Self {
            model: model.to_string(),
            state,
            keys: BTreeMap::new(),
            graph: GraphProto::default(),
            used: BTreeSet::new(),
            names: BTreeSet::new(),
        }
    }

    /// A builder for the network `model` (named `name` in messages): its weights are the
    /// PyTorch state dict [`to_pytorch_state_dict`] writes, found by Burn module path with
    /// [`GraphBuilder::key`].
    pub(crate) fn for_model<M: PytorchModel>(name: &str, model: &M) -> Self {
        let mut builder = Self::new(name, to_pytorch_state_dict(model));
        builder.keys = export_keys(model);
        builder
    }

    /// The state-dict key of the parameter at Burn module path `path`
    /// (`lstm.layers.0.weight_ih` → `lstm.weight_ih_l0`), or an error naming the path.
    pub(crate) fn key(&self, path: &str) -> Result<String, OnnxError> {
        self.keys
            .get(path)
            .cloned()
            .ok_or_else(|| self.unsupported(format!("the model has no parameter `{path}`")))
    }

    /// An [`OnnxError::Unsupported`] about this model.
    pub(crate) fn unsupported(&self, reason: impl Into<String>) -> OnnxError {
        OnnxError::unsupported(&self.model, reason)
    }

    /// The shape of state-dict tensor `key`, or an error naming it.
    pub(crate) fn shape(&self, key: &str) -> Result<Vec<usize>, OnnxError> {
        self.state
            .get(key)
            .map(|d| d.shape().to_vec())
            .ok_or_else(|| self.unsupported(format!("the state dict has no tensor `{key}`")))
    }

    /// The value name of state-dict tensor `key`, added as an initializer on first use.
    pub(crate) fn weight(&mut self, key: &str) -> Result<String, OnnxError> {
        if self.used.contains(key) {
            return Ok(key.to_string());
        }
        let Some(data) = self.state.get(key) else {
            return Err(self.unsupported(format!("the state dict has no tensor `{key}`")));
        };
        let tensor = float_tensor(key, data).map_err(|reason| self.unsupported(reason))?;
        self.graph.initializer.push(tensor);
        self.used.insert(key.to_string());
        self.names.insert(key.to_string());
        Ok(key.to_string())
    }

    /// A fresh name starting with `base`.
    fn unique(&mut self, base: String) -> String {
        let mut name = base.clone();
        let mut n = 1;
        while self.state.get(&name).is_some() || !self.names.insert(name.clone()) {
            name = format!("{base}_{n}");
            n += 1;
        }
        name
    }

    /// Add a node with `outputs` outputs; returns their names. Node names follow PyTorch's
    /// exporter (`/fc1/Gemm`), value names add `_output_{k}`.
    pub(crate) fn node_n(
        &mut self,
        scope: &str,
        op_type: &str,
        inputs: &[&str],
        attributes: &[(&str, Attr)],
        outputs: usize,
    ) -> Vec<String> {
        let name = self.unique(format!("/{scope}/{op_type}"));
        let output: Vec<String> = (0..outputs)
            .map(|k| self.unique(format!("{name}_output_{k}")))
            .collect();
        let attribute = attributes
            .iter()
            .map(|(name, value)| attribute(name, value))
            .collect();
        let mut node = NodeProto::new();
        node.input = inputs.iter().map(|s| s.to_string()).collect();
        node.output = output.clone();
        node.name = name;
        node.op_type = op_type.to_string();
        node.attribute = attribute;
        self.graph.node.push(node);
        output
    }

    /// Add a node with one output; returns its name.
    pub(crate) fn node(
        &mut self,
        scope: &str,
        op_type: &str,
        inputs: &[&str],
        attributes: &[(&str, Attr)],
    ) -> String {
        let mut outputs = self.node_n(scope, op_type, inputs, attributes, 1);
        outputs.pop().unwrap_or_default()
    }

    /// A `Constant` node holding `tensor`; returns its output.
    fn constant(&mut self, scope: &str, tensor: TensorProto) -> String {
        let output = self.node(scope, "Constant", &[], &[]);
        if let Some(node) = self.graph.node.last_mut() {
            let mut value = AttributeProto::new();
            value.name = "value".into();
            value.type_ = AttributeType::TENSOR.into();
            value.t = Some(tensor).into();
            node.attribute.push(value);
        }
        output
    }

    /// A constant 1-D int64 tensor (axes, shapes, indices).
    pub(crate) fn ints(&mut self, scope: &str, values: &[i64]) -> String {
        let mut value = tensor("", &[values.len()], data_type::INT64);
        value.int64_data = values.to_vec();
        self.constant(scope, value)
    }

    /// A constant float tensor of `shape` (row-major `values`).
    pub(crate) fn floats(&mut self, scope: &str, values: &[f32], shape: &[usize]) -> String {
        let value = f32_tensor("", shape, values);
        self.constant(scope, value)
    }

    /// Declare a graph input.
    pub(crate) fn input(&mut self, name: &str, elem_type: i32, shape: Vec<Dim>) -> String {
        self.names.insert(name.to_string());
        self.graph.input.push(value_info(name, elem_type, &shape));
        name.to_string()
    }

    /// Rename node output `value` to `name` and declare it a graph output.
    pub(crate) fn output(&mut self, value: &str, name: &str, shape: Vec<Dim>) {
        for node in &mut self.graph.node {
            for v in node.input.iter_mut().chain(node.output.iter_mut()) {
                if v == value {
                    *v = name.to_string();
                }
            }
        }
        self.graph
            .output
            .push(value_info(name, data_type::FLOAT, &shape));
    }

    /// The finished graph, after checking that every state-dict tensor became an initializer.
    pub(crate) fn finish(mut self, name: &str) -> Result<GraphProto, OnnxError> {
        let unused: Vec<&str> = self
            .state
            .keys()
            .filter(|k| !self.used.contains(*k))
            .collect();
        if !unused.is_empty() {
            return Err(self.unsupported(format!(
                "the graph does not use state-dict tensor(s) {}",
                unused.join(", ")
            )));
        }
        self.graph.name = name.to_string();
        Ok(self.graph)
    }
}

/// `AttributeProto` field numbers of the two scalar values, for [`attribute`].
const ATTRIBUTE_F: u32 = 2;
const ATTRIBUTE_I: u32 = 3;

/// An attribute of a node.
///
/// onnx-ir generates the messages from a proto3 copy of `onnx.proto`, whose encoder leaves out
/// scalars equal to their default. ONNX's own `onnx.proto` is proto2, where a reader can ask
/// whether `i` was written (`has_i()`), and `torch.onnx.export` always writes it. ONNX 1.23
/// and ONNX Runtime 1.32 read an absent `i` as 0, but a reader that checks presence may take
/// it as "use the operator's default" (1 for `keepdims`). So a zero `i` or `f` is still
/// written, as before the switch to onnx-ir: as an unknown field under its own field number,
/// which every parser (ours included) reads back into `i`/`f`.
fn attribute(name: &str, value: &Attr) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    let kind = match value {
        Attr::Int(i) => {
            a.i = *i;
            if *i == 0 {
                a.special_fields
                    .mut_unknown_fields()
                    .add_varint(ATTRIBUTE_I, 0);
            }
            AttributeType::INT
        }
        Attr::Float(f) => {
            a.f = *f;
            // -0.0 == 0.0, and the encoder leaves out both.
            if *f == 0.0 {
                a.special_fields
                    .mut_unknown_fields()
                    .add_fixed32(ATTRIBUTE_F, f.to_bits());
            }
            AttributeType::FLOAT
        }
        Attr::Ints(ints) => {
            a.ints = ints.clone();
            AttributeType::INTS
        }
        Attr::Str(s) => {
            a.s = s.as_bytes().to_vec().into();
            AttributeType::STRING
        }
    };
    a.type_ = kind.into();
    a
}

/// An empty tensor of `data_type` and `shape` named `name` (empty for a `Constant`'s value),
/// for the caller to fill one of the data fields of.
pub(crate) fn tensor(name: &str, shape: &[usize], data_type: i32) -> TensorProto {
    let mut tensor = TensorProto::new();
    tensor.name = name.to_string();
    tensor.dims = shape.iter().map(|&d| d as i64).collect();
    tensor.data_type = data_type;
    tensor
}

/// A FLOAT tensor with its values as little-endian `raw_data` (as PyTorch's exporter writes
/// them: compact, and read without per-value decoding).
pub(crate) fn f32_tensor(name: &str, shape: &[usize], values: &[f32]) -> TensorProto {
    let mut tensor = tensor(name, shape, data_type::FLOAT);
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    tensor.raw_data = raw.into();
    tensor
}

/// A state-dict tensor as a FLOAT initializer.
fn float_tensor(key: &str, data: &TensorData) -> Result<TensorProto, String> {
    let values = data.try_to_vec_as::<f32>().map_err(|e| {
        format!(
            "tensor `{key}` ({:?}) cannot be read as f32: {e:?}",
            data.dtype()
        )
    })?;
    Ok(f32_tensor(key, data.shape(), &values))
}

/// A graph input or output: a tensor of `elem_type` with `shape`.
pub(crate) fn value_info(name: &str, elem_type: i32, shape: &[Dim]) -> ValueInfoProto {
    let mut info = ValueInfoProto::new();
    info.name = name.to_string();
    let tensor_type = info.type_.mut_or_insert_default().mut_tensor_type();
    tensor_type.elem_type = elem_type;
    let dims = &mut tensor_type.shape.mut_or_insert_default().dim;
    for d in shape {
        // `tensor_shape_proto::Dimension` is not re-exported: push a default one and set it.
        dims.push(Default::default());
        if let Some(dim) = dims.last_mut() {
            match d {
                Dim::Value(v) => dim.set_dim_value(*v),
                Dim::Param(p) => dim.set_dim_param(p.clone()),
            }
        }
    }
    info
}

/// The shape of a graph input or output, `None` when it has none (tests read the exported
/// graphs back with it).
#[cfg(test)]
pub(crate) fn shape_of(info: &ValueInfoProto) -> Option<Vec<Dim>> {
    let shape = info.type_.as_ref()?.tensor_type().shape.as_ref()?;
    let dims = shape.dim.iter().map(|d| {
        if d.has_dim_param() {
            Dim::Param(d.dim_param().to_string())
        } else {
            Dim::Value(d.dim_value())
        }
    });
    Some(dims.collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use onnx_ir::Message;

    #[test]
    fn value_infos_and_attributes_survive_the_protobuf_round_trip() {
        let shape = [Dim::Param("batch".into()), Dim::Value(0), Dim::Value(3)];
        let info = value_info("x", data_type::INT64, &shape);
        let back = ValueInfoProto::parse_from_bytes(&info.write_to_bytes().unwrap()).unwrap();
        assert_eq!(back.name, "x");
        assert_eq!(back.type_.tensor_type().elem_type, data_type::INT64);
        // A zero dimension is a fixed size, not an unset one.
        assert_eq!(shape_of(&back).unwrap(), shape);
        for (value, kind) in [
            (Attr::Int(-2), AttributeType::INT),
            (Attr::Float(0.5), AttributeType::FLOAT),
            (Attr::Ints(vec![1, -1]), AttributeType::INTS),
            (Attr::Str("forward"), AttributeType::STRING),
        ] {
            let a = attribute("a", &value);
            let back = AttributeProto::parse_from_bytes(&a.write_to_bytes().unwrap()).unwrap();
            assert_eq!(back.type_.enum_value(), Ok(kind));
            assert_eq!(back, a);
        }
    }

    #[test]
    fn zero_scalar_attributes_are_written_explicitly() {
        // `keepdims = 0`: name (field 1), type INT (field 20 = 2), then i (field 3) = 0.
        let keepdims = attribute("k", &Attr::Int(0)).write_to_bytes().unwrap();
        assert_eq!(keepdims, [0x0a, 1, b'k', 0xa0, 0x01, 2, 0x18, 0]);
        let back = AttributeProto::parse_from_bytes(&keepdims).unwrap();
        assert_eq!(
            (back.i, back.type_.enum_value()),
            (0, Ok(AttributeType::INT))
        );
        // `f = -0.0` keeps its sign bit.
        let f = attribute("f", &Attr::Float(-0.0)).write_to_bytes().unwrap();
        assert_eq!(f[f.len() - 5..], [0x15, 0, 0, 0, 0x80]);
        let back = AttributeProto::parse_from_bytes(&f).unwrap();
        assert!(back.f == 0.0 && back.f.is_sign_negative());
    }

    fn state() -> StateDict {
        let mut state = StateDict::new("test");
        state.insert("fc.weight", TensorData::new(vec![1.0f32, 2.0], [1, 2]));
        state.insert("fc.bias", TensorData::new(vec![0.5f64], [1]));
        state
    }

    #[test]
    fn weights_become_initializers_once_and_names_are_unique() {
        let mut b = GraphBuilder::new("Test", state());
        let x = b.input("input", data_type::FLOAT, vec![Dim::Param("batch".into())]);
        let w = b.weight("fc.weight").unwrap();
        let bias = b.weight("fc.bias").unwrap();
        assert_eq!(b.weight("fc.weight").unwrap(), "fc.weight");
        let y1 = b.node("fc", "Gemm", &[&x, &w, &bias], &[("transB", Attr::Int(1))]);
        let y2 = b.node("fc", "Relu", &[&y1], &[]);
        let y3 = b.node("fc", "Relu", &[&y2], &[]);
        assert_eq!(y1, "/fc/Gemm_output_0");
        assert_eq!(y3, "/fc/Relu_1_output_0");
        b.output(&y3, "logits", vec![]);
        let graph = b.finish("g").unwrap();
        assert_eq!(graph.initializer.len(), 2);
        // f64 weights are written as f32.
        assert_eq!(graph.initializer[1].raw_data[..], 0.5f32.to_le_bytes());
        assert_eq!(graph.node[2].output, ["logits"]);
        assert_eq!(graph.node[1].name, "/fc/Relu");
        assert_eq!(graph.node[2].name, "/fc/Relu_1");
    }

    #[test]
    fn unused_and_missing_weights_are_errors() {
        let mut b = GraphBuilder::new("Test", state());
        b.weight("fc.weight").unwrap();
        let err = b.weight("fc2.weight").unwrap_err();
        assert!(err.to_string().contains("no tensor `fc2.weight`"), "{err}");
        let err = b.finish("g").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot export Test to ONNX: the graph does not use state-dict tensor(s) fc.bias"
        );
    }
}
