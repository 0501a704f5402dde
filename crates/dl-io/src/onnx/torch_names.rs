//! Giving back PyTorch's names to the weights `torch.onnx.export` (TorchScript exporter) stores
//! under generated `onnx::…` names.
//!
//! The exporter folds two kinds of parameters into new constants:
//!
//! * the weight of a linear map computed as `MatMul(x, W) + b` (a `Linear` on a 3-D input, the
//!   attention's `in_proj_weight`) becomes `W = weight.T` named `onnx::MatMul_N`; the `Add`
//!   that follows reads the bias under its own name (`blocks.0.ff.0.bias`), which names the
//!   weight (`blocks.0.ff.0.weight`; `in_proj_bias` gives `in_proj_weight`);
//! * the weights of `nn.LSTM` become the inputs W, R, B of one ONNX `LSTM` node per layer,
//!   named `onnx::LSTM_N`, with the gates in ONNX's order (i, o, f, c) and both biases in B;
//!   the node's scope (`/lstm/LSTM_1`) names the module and the node's rank in that scope
//!   the layer.
//!
//! Only initializers with the exporter's `onnx::` prefix are renamed, each once; everything
//! else keeps its name. Each renaming is noted in the state dict's notes.

use std::collections::BTreeMap;

use crate::state_dict::StateDict;
use burn::tensor::TensorData;
use onnx_ir::{GraphProto as Graph, NodeProto as Node};

const GENERATED: &str = "onnx::";

/// Rename the generated weights of `graph` in `state` where their PyTorch names can be told.
pub(crate) fn recover(graph: &Graph, state: &mut StateDict) {
    let mut renames: Vec<(String, String, TensorData)> = Vec::new();
    let mut consumed = Vec::new();
    recover_matmul_weights(graph, state, &mut renames, &mut consumed);
    recover_lstm_weights(graph, state, &mut renames, &mut consumed);
    for name in consumed {
        state.tensors.remove(&name);
    }
    for (from, to, data) in renames {
        state.notes.push(format!("`{to}` read from `{from}`"));
        state.tensors.insert(to, data);
    }
}

/// The initializer `name` if it has the exporter's generated prefix and is not yet used.
fn generated<'a>(state: &'a StateDict, name: &str, consumed: &[String]) -> Option<&'a TensorData> {
    if !name.starts_with(GENERATED) || consumed.iter().any(|c| c == name) {
        return None;
    }
    state.tensors.get(name)
}

fn transpose_2d(data: &TensorData) -> Option<TensorData> {
    let [rows, cols] = <[usize; 2]>::try_from(data.shape().to_vec()).ok()?;
    let values = data.try_to_vec_as::<f32>().ok()?;
    let mut out = vec![0f32; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    Some(TensorData::new(out, [cols, rows]))
}

/// `MatMul(x, onnx::MatMul_N)` whose output goes to `Add` with a `….bias` or `….in_proj_bias`.
fn recover_matmul_weights(
    graph: &Graph,
    state: &StateDict,
    renames: &mut Vec<(String, String, TensorData)>,
    consumed: &mut Vec<String>,
) {
    for node in graph.node.iter().filter(|n| is_op(n, "MatMul")) {
        let (Some(weight), Some(output)) = (node.input.get(1), node.output.first()) else {
            continue;
        };
        let Some(data) = generated(state, weight, consumed) else {
            continue;
        };
        let bias = graph
            .node
            .iter()
            .filter(|n| is_op(n, "Add") && n.input.len() == 2 && n.input.contains(output))
            .find_map(|add| add.input.iter().find(|i| *i != output));
        let Some(name) = bias.and_then(|b| weight_name_for_bias(b)) else {
            continue;
        };
        if state.tensors.contains_key(&name) || renames.iter().any(|r| r.1 == name) {
            continue;
        }
        if let Some(transposed) = transpose_2d(data) {
            consumed.push(weight.clone());
            renames.push((weight.clone(), name, transposed));
        }
    }
}

fn weight_name_for_bias(bias: &str) -> Option<String> {
    if let Some(prefix) = bias.strip_suffix(".in_proj_bias") {
        return Some(format!("{prefix}.in_proj_weight"));
    }
    bias.strip_suffix(".bias")
        .map(|prefix| format!("{prefix}.weight"))
}

fn is_op(node: &Node, op: &str) -> bool {
    node.op_type == op && node.domain.is_empty()
}

/// The module path of a node from its TorchScript scope name: `/lstm/LSTM_1` is `lstm`;
/// `/blocks.0/ff/ff.0/MatMul` is `blocks.0.ff.0` (a container's child is named with the
/// container's name, which then replaces it).
fn module_path(node_name: &str) -> Option<String> {
    let mut parts: Vec<&str> = node_name.split('/').filter(|p| !p.is_empty()).collect();
    parts.pop()?; // the operator
    let mut path: Vec<String> = Vec::new();
    for part in parts {
        match path.last() {
            Some(last) if part.starts_with(&format!("{last}.")) => {
                if let Some(slot) = path.last_mut() {
                    *slot = part.to_string();
                }
            }
            _ => path.push(part.to_string()),
        }
    }
    (!path.is_empty()).then(|| path.join("."))
}

/// Rows of `data` `[directions, rows, cols]` for direction `d`, with the four gate blocks
/// moved from ONNX's order (i, o, f, c) back to PyTorch's (i, f, g, o).
fn gates_ifgo(data: &TensorData, d: usize, offset: usize, rows: usize) -> Option<TensorData> {
    let shape = data.shape().to_vec();
    let (total_rows, cols) = match shape.as_slice() {
        [_, r, c] => (*r, *c),
        [_, r] => (*r, 1),
        _ => return None,
    };
    if !rows.is_multiple_of(4) || offset + rows > total_rows {
        return None;
    }
    let values = data.try_to_vec_as::<f32>().ok()?;
    let h = rows / 4;
    let block = |g: usize| {
        let start = (d * total_rows + offset + g * h) * cols;
        values.get(start..start + h * cols)
    };
    // PyTorch i, f, g, o = ONNX blocks 0, 2, 3, 1.
    let mut out = Vec::with_capacity(rows * cols);
    for g in [0, 2, 3, 1] {
        out.extend_from_slice(block(g)?);
    }
    let shape = if shape.len() == 3 {
        vec![rows, cols]
    } else {
        vec![rows]
    };
    Some(TensorData::new(out, shape))
}

/// One `LSTM` node per layer: W, R, B named `onnx::LSTM_N`.
fn recover_lstm_weights(
    graph: &Graph,
    state: &StateDict,
    renames: &mut Vec<(String, String, TensorData)>,
    consumed: &mut Vec<String>,
) {
    let mut layer_of_scope: BTreeMap<String, usize> = BTreeMap::new();
    for node in graph.node.iter().filter(|n| is_op(n, "LSTM")) {
        let Some(scope) = module_path(&node.name) else {
            continue;
        };
        let layer = layer_of_scope.entry(scope.clone()).or_insert(0);
        let k = *layer;
        *layer += 1;
        let directions = match node
            .attribute
            .iter()
            .find(|a| a.name == "direction")
            .map(|a| &a.s[..])
        {
            None | Some(b"forward") => 1,
            Some(b"bidirectional") => 2,
            // A reverse-only LSTM has no nn.LSTM counterpart.
            Some(_) => continue,
        };
        let names: Vec<&String> = node.input.iter().skip(1).take(3).collect();
        let tensors: Vec<Option<&TensorData>> = names
            .iter()
            .map(|n| generated(state, n, consumed))
            .collect();
        let (Some(Some(w)), Some(Some(r))) = (tensors.first(), tensors.get(1)) else {
            continue;
        };
        let b = tensors.get(2).copied().flatten();
        let hidden4 = r.shape().get(1).copied().unwrap_or(0);
        let mut found = Vec::new();
        for d in 0..directions {
            let suffix = if d == 1 { "_reverse" } else { "" };
            let key = |name: &str| format!("{scope}.{name}_l{k}{suffix}");
            let mut parts = vec![
                (names[0], key("weight_ih"), gates_ifgo(w, d, 0, hidden4)),
                (names[1], key("weight_hh"), gates_ifgo(r, d, 0, hidden4)),
            ];
            if let Some(b) = b {
                parts.push((names[2], key("bias_ih"), gates_ifgo(b, d, 0, hidden4)));
                parts.push((names[2], key("bias_hh"), gates_ifgo(b, d, hidden4, hidden4)));
            }
            found.extend(parts);
        }
        if found.iter().any(|(_, to, data)| {
            data.is_none() || state.tensors.contains_key(to) || renames.iter().any(|r| &r.1 == to)
        }) {
            continue;
        }
        for (from, to, data) in found {
            if let Some(data) = data {
                if !consumed.contains(from) {
                    consumed.push(from.clone());
                }
                renames.push((from.clone(), to, data));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use onnx_ir::{AttributeProto, AttributeType};

    #[test]
    fn scope_names_become_module_paths() {
        assert_eq!(module_path("/lstm/LSTM_1").unwrap(), "lstm");
        assert_eq!(
            module_path("/transformer_blocks.0/feed_forward/feed_forward.0/MatMul").unwrap(),
            "transformer_blocks.0.feed_forward.0"
        );
        assert_eq!(module_path("/encoder/rnn/LSTM").unwrap(), "encoder.rnn");
        assert!(module_path("LSTM_3").is_none());
    }

    fn node(op: &str, name: &str, input: &[&str], output: &[&str]) -> Node {
        let mut node = Node::new();
        node.op_type = op.into();
        node.name = name.into();
        node.input = input.iter().map(|s| s.to_string()).collect();
        node.output = output.iter().map(|s| s.to_string()).collect();
        node
    }

    fn graph(node: Vec<Node>) -> Graph {
        let mut graph = Graph::new();
        graph.node = node;
        graph
    }

    #[test]
    fn matmul_weights_are_named_by_their_bias() {
        let mut state = StateDict::new("m");
        // W = weight.T with weight [[1, 2, 3], [4, 5, 6]] ([out 2, in 3]).
        state.insert(
            "onnx::MatMul_7",
            TensorData::new(vec![1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0], [3, 2]),
        );
        state.insert("ff.0.bias", TensorData::new(vec![0.0f32, 0.0], [2]));
        let graph = graph(vec![
            node(
                "MatMul",
                "/ff/ff.0/MatMul",
                &["x", "onnx::MatMul_7"],
                &["y"],
            ),
            node("Add", "/ff/ff.0/Add", &["ff.0.bias", "y"], &["z"]),
        ]);
        recover(&graph, &mut state);
        assert_eq!(
            state.keys().collect::<Vec<_>>(),
            ["ff.0.bias", "ff.0.weight"]
        );
        let w = state.get("ff.0.weight").unwrap();
        assert_eq!(w.shape().to_vec(), [2, 3]);
        assert_eq!(
            w.try_to_vec::<f32>().unwrap(),
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        assert_eq!(state.notes(), ["`ff.0.weight` read from `onnx::MatMul_7`"]);
    }

    #[test]
    fn lstm_gates_go_back_to_pytorch_order() {
        // hidden 1, input 1: W rows in ONNX order i, o, f, c = 1, 2, 3, 4, so PyTorch's
        // i, f, g, o is 1, 3, 4, 2. B = [Wb; Rb] = [10, 20, 30, 40; 50, 60, 70, 80].
        let mut state = StateDict::new("m");
        state.insert(
            "onnx::LSTM_1",
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 4, 1]),
        );
        state.insert(
            "onnx::LSTM_2",
            TensorData::new(vec![5.0f32, 6.0, 7.0, 8.0], [1, 4, 1]),
        );
        let b: Vec<f32> = (1..=8).map(|v| v as f32 * 10.0).collect();
        state.insert("onnx::LSTM_3", TensorData::new(b, [1, 8]));
        let mut lstm = node(
            "LSTM",
            "/lstm/LSTM",
            &["x", "onnx::LSTM_1", "onnx::LSTM_2", "onnx::LSTM_3"],
            &["y"],
        );
        let mut direction = AttributeProto::new();
        direction.name = "direction".into();
        direction.type_ = AttributeType::STRING.into();
        direction.s = b"forward".to_vec().into();
        lstm.attribute.push(direction);
        let graph = graph(vec![lstm]);
        recover(&graph, &mut state);
        let values = |k: &str| state.get(k).unwrap().try_to_vec::<f32>().unwrap();
        assert_eq!(values("lstm.weight_ih_l0"), [1.0, 3.0, 4.0, 2.0]);
        assert_eq!(
            state.get("lstm.weight_ih_l0").unwrap().shape().to_vec(),
            [4, 1]
        );
        assert_eq!(values("lstm.weight_hh_l0"), [5.0, 7.0, 8.0, 6.0]);
        assert_eq!(values("lstm.bias_ih_l0"), [10.0, 30.0, 40.0, 20.0]);
        assert_eq!(values("lstm.bias_hh_l0"), [50.0, 70.0, 80.0, 60.0]);
        assert_eq!(state.len(), 4, "{:?}", state.keys().collect::<Vec<_>>());
    }

    #[test]
    fn named_weights_are_left_alone() {
        let mut state = StateDict::new("m");
        state.insert("w", TensorData::new(vec![1.0f32], [1, 1]));
        state.insert("fc.bias", TensorData::new(vec![0.0f32], [1]));
        let graph = graph(vec![
            node("MatMul", "/fc/MatMul", &["x", "w"], &["y"]),
            node("Add", "/fc/Add", &["y", "fc.bias"], &["z"]),
        ]);
        recover(&graph, &mut state);
        assert_eq!(state.keys().collect::<Vec<_>>(), ["fc.bias", "w"]);
        assert!(state.notes().is_empty());
    }
}
