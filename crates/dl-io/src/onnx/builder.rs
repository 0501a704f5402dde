//! Building an ONNX graph node by node: unique value names, constants, and the model's
//! weights as initializers under their PyTorch state-dict names.

use std::collections::BTreeSet;

use burn::tensor::TensorData;

use super::error::OnnxError;
use super::proto::{Attribute, Dim, Graph, Node, Tensor, ValueInfo, attribute_type, data_type};
use crate::state_dict::StateDict;

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
    graph: Graph,
    used: BTreeSet<String>,
    names: BTreeSet<String>,
}

impl GraphBuilder {
    /// A builder for `model` (its type name, for messages) whose weights are `state`.
    pub(crate) fn new(model: &str, state: StateDict) -> Self {
        Self {
            model: model.to_string(),
            state,
            graph: Graph::default(),
            used: BTreeSet::new(),
            names: BTreeSet::new(),
        }
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
        self.graph.node.push(Node {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: output.clone(),
            name,
            op_type: op_type.to_string(),
            domain: String::new(),
            attribute,
        });
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
    fn constant(&mut self, scope: &str, tensor: Tensor) -> String {
        let output = self.node(scope, "Constant", &[], &[]);
        if let Some(node) = self.graph.node.last_mut() {
            node.attribute.push(Attribute {
                name: "value".into(),
                r#type: attribute_type::TENSOR,
                t: Some(tensor),
                ..Attribute::default()
            });
        }
        output
    }

    /// A constant 1-D int64 tensor (axes, shapes, indices).
    pub(crate) fn ints(&mut self, scope: &str, values: &[i64]) -> String {
        self.constant(
            scope,
            Tensor {
                dims: vec![values.len() as i64],
                data_type: data_type::INT64,
                int64_data: values.to_vec(),
                ..Tensor::default()
            },
        )
    }

    /// A constant float tensor of `shape` (row-major `values`).
    pub(crate) fn floats(&mut self, scope: &str, values: &[f32], shape: &[usize]) -> String {
        self.constant(
            scope,
            Tensor {
                dims: shape.iter().map(|&d| d as i64).collect(),
                data_type: data_type::FLOAT,
                raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ..Tensor::default()
            },
        )
    }

    /// Declare a graph input.
    pub(crate) fn input(&mut self, name: &str, elem_type: i32, shape: Vec<Dim>) -> String {
        self.names.insert(name.to_string());
        self.graph.input.push(ValueInfo {
            name: name.to_string(),
            elem_type,
            shape: Some(shape),
        });
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
        self.graph.output.push(ValueInfo {
            name: name.to_string(),
            elem_type: data_type::FLOAT,
            shape: Some(shape),
        });
    }

    /// The finished graph, after checking that every state-dict tensor became an initializer.
    pub(crate) fn finish(mut self, name: &str) -> Result<Graph, OnnxError> {
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

fn attribute(name: &str, value: &Attr) -> Attribute {
    let mut a = Attribute {
        name: name.to_string(),
        ..Attribute::default()
    };
    match value {
        Attr::Int(i) => {
            a.r#type = attribute_type::INT;
            a.i = *i;
        }
        Attr::Float(f) => {
            a.r#type = attribute_type::FLOAT;
            a.f = *f;
        }
        Attr::Ints(ints) => {
            a.r#type = attribute_type::INTS;
            a.ints = ints.clone();
        }
        Attr::Str(s) => {
            a.r#type = attribute_type::STRING;
            a.s = s.as_bytes().to_vec();
        }
    }
    a
}

/// A state-dict tensor as a FLOAT initializer (little-endian `raw_data`).
fn float_tensor(key: &str, data: &TensorData) -> Result<Tensor, String> {
    let values = data.try_to_vec_as::<f32>().map_err(|e| {
        format!(
            "tensor `{key}` ({:?}) cannot be read as f32: {e:?}",
            data.dtype()
        )
    })?;
    Ok(Tensor {
        dims: data.shape().iter().map(|&d| d as i64).collect(),
        data_type: data_type::FLOAT,
        name: key.to_string(),
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Tensor::default()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
        assert_eq!(graph.initializer[1].raw_data, 0.5f32.to_le_bytes());
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
