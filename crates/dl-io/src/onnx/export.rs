//! `export_onnx`: a dl-models network as an ONNX model (opset 17) whose initializers are its
//! PyTorch state dict.

use std::path::Path;

use dl_models::{Cnn, LstmClassifier, LstmForecaster, Mlp, ScratchMlp, TransformerClassifier};
use onnx_ir::{GraphProto, Message, ModelProto};

use super::error::OnnxError;
use super::graphs;
use crate::pytorch::PytorchModel;

/// The ONNX operator set the graphs are written in.
pub const ONNX_OPSET: i64 = 17;

/// The ONNX IR version that goes with opset 17 (ONNX 1.12).
pub(crate) const IR_VERSION: i64 = 8;

/// Choices for [`export_onnx`]. The defaults give a dynamic batch dimension (`"batch"`) and,
/// for the LSTM and Transformer, a dynamic sequence length (`"sequence"`).
///
/// ```
/// let options = dl_io::OnnxExportOptions::new()
///     .with_batch_size(1)
///     .with_graph_name("digits");
/// assert_eq!(options.batch_size, Some(1));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OnnxExportOptions {
    /// The graph's name; by default the model's type name (`"Mlp"`).
    pub graph_name: Option<String>,
    /// A fixed batch size instead of the symbolic `"batch"` dimension.
    pub batch_size: Option<usize>,
    /// A fixed sequence length (LSTM and Transformer inputs) instead of the symbolic
    /// `"sequence"` dimension. For a Transformer it may not exceed `max_seq_length`.
    pub sequence_length: Option<usize>,
    /// A fixed `[height, width]` for CNN inputs instead of the symbolic `"height"` and
    /// `"width"`; it is checked against `fc1`'s input size.
    pub image_size: Option<[usize; 2]>,
    /// The model's `doc_string`.
    pub doc_string: Option<String>,
}

impl OnnxExportOptions {
    /// The defaults: every batch and sequence dimension symbolic.
    pub fn new() -> Self {
        Self::default()
    }

    /// Name the graph.
    pub fn with_graph_name(mut self, name: impl Into<String>) -> Self {
        self.graph_name = Some(name.into());
        self
    }

    /// Fix the batch size.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = Some(batch_size);
        self
    }

    /// Fix the sequence length of LSTM and Transformer inputs.
    pub fn with_sequence_length(mut self, length: usize) -> Self {
        self.sequence_length = Some(length);
        self
    }

    /// Fix the image size of CNN inputs.
    pub fn with_image_size(mut self, height: usize, width: usize) -> Self {
        self.image_size = Some([height, width]);
        self
    }

    /// Set the model's documentation string.
    pub fn with_doc_string(mut self, doc: impl Into<String>) -> Self {
        self.doc_string = Some(doc.into());
        self
    }

    fn check(&self, model: &str) -> Result<(), OnnxError> {
        let zero =
            |what: &str| OnnxError::unsupported(model, format!("{what} must be positive (got 0)"));
        if self.batch_size == Some(0) {
            return Err(zero("batch_size"));
        }
        if self.sequence_length == Some(0) {
            return Err(zero("sequence_length"));
        }
        if self.image_size.is_some_and(|s| s.contains(&0)) {
            return Err(zero("image_size"));
        }
        Ok(())
    }
}

/// A model that can be written as an ONNX inference graph (opset 17).
///
/// | model | input | graph | output |
/// |---|---|---|---|
/// | [`Mlp`] | `input` `[batch, in]` f32 | `Gemm`(transB=1) / `Relu` | `logits` |
/// | [`Cnn`] | `images` `[batch, c, height, width]` f32 | `Conv` / `Relu` / `MaxPool` ×3, `Flatten`, `Gemm` / `Relu` / `Gemm` | `logits` |
/// | [`LstmClassifier`] | `sequences` `[batch, sequence, features]` f32 | `Transpose`, one `LSTM` per layer, `Gemm` on the last step | `logits` |
/// | [`LstmForecaster`] | `sequences` `[batch, sequence, features]` f32 | as the classifier, `Gemm` of `head` on the last step | `forecast` `[batch, horizon]` |
/// | [`TransformerClassifier`] | `tokens` `[batch, sequence]` i64 or `patches` `[batch, sequence, features]` f32 | `Gather` or `MatMul`+`Add`, positions, attention in `MatMul`/`Softmax`, `LayerNormalization`, `ReduceMean`, `Gemm` | `logits` |
/// | [`ScratchMlp`] | `input` `[batch, in]` f32 | `Gemm` + activation per layer, `Sigmoid` or `Softmax` | `probabilities` |
///
/// Every initializer is a tensor of [`to_pytorch_state_dict`](crate::to_pytorch_state_dict)
/// under the same name, in the same layout, so reading them back
/// ([`StateDict::from_onnx_file`](crate::StateDict::from_onnx_file)) gives a state dict that
/// loads strictly. Where ONNX wants another layout the graph converts: the LSTM's gate blocks
/// are reordered from PyTorch's (i, f, g, o) to ONNX's (i, o, f, c) by `Split`/`Concat`
/// nodes, the attention's packed `in_proj_weight` is transposed and split into q, k, v.
/// The positional table of the Transformer, which PyTorch keeps outside the state dict, is a
/// `Constant` node. Dropout is left out: the graph computes the model in evaluation mode.
pub trait OnnxExport: PytorchModel {
    /// The ONNX model as protobuf bytes (what [`export_onnx`] writes).
    fn to_onnx_bytes(&self, options: &OnnxExportOptions) -> Result<Vec<u8>, OnnxError>;
}

/// Wrap a graph into a model with the opset and producer, as protobuf bytes.
fn model_bytes(
    graph: GraphProto,
    model: &str,
    options: &OnnxExportOptions,
) -> Result<Vec<u8>, OnnxError> {
    let mut proto = ModelProto::new();
    proto.ir_version = IR_VERSION;
    // The default domain (`ai.onnx`) is the empty string.
    proto.opset_import.push(Default::default());
    if let Some(opset) = proto.opset_import.last_mut() {
        opset.version = ONNX_OPSET;
    }
    proto.producer_name = "dl-rs".into();
    proto.producer_version = env!("CARGO_PKG_VERSION").into();
    proto.doc_string = options.doc_string.clone().unwrap_or_else(|| {
        format!(
            "dl-rs {model} (inference graph, weights under PyTorch state-dict names), written by \
             dl-io"
        )
    });
    proto.graph = Some(graph).into();
    // The one failure is a model over protobuf's 2 GiB message limit, which no reader accepts.
    proto
        .write_to_bytes()
        .map_err(|e| OnnxError::unsupported(model, format!("cannot encode the model: {e}")))
}

macro_rules! onnx_export {
    ($model:ty, $name:literal, $graph:path) => {
        impl OnnxExport for $model {
            fn to_onnx_bytes(&self, options: &OnnxExportOptions) -> Result<Vec<u8>, OnnxError> {
                options.check($name)?;
                model_bytes($graph(self, options)?, $name, options)
            }
        }
    };
}

onnx_export!(Mlp, "Mlp", graphs::mlp);
onnx_export!(Cnn, "Cnn", graphs::cnn);
onnx_export!(LstmClassifier, "LstmClassifier", graphs::lstm);
onnx_export!(LstmForecaster, "LstmForecaster", graphs::lstm_forecaster);
onnx_export!(
    TransformerClassifier,
    "TransformerClassifier",
    graphs::transformer
);
onnx_export!(ScratchMlp, "ScratchMlp", graphs::scratch);

/// Write `model` to `path` as an ONNX model (opset 17) for inference: ONNX Runtime,
/// `onnx.checker`, or any other runtime.
///
/// The input's first dimension is the symbol `batch` (fixed with
/// [`OnnxExportOptions::with_batch_size`]); see [`OnnxExport`] for each model's graph. The
/// write is atomic: the bytes go to a temporary file beside `path`, which is flushed to disk
/// and renamed over `path`; on error the temporary file is removed and an existing `path` is
/// left as it was.
///
/// ```
/// use dl_io::{OnnxExportOptions, StateDict, export_onnx, to_pytorch_state_dict};
/// let device = dl_core::BackendKind::Flex.device()?;
/// let model = dl_models::MlpConfig::new().with_hidden_sizes(vec![16]).init(&device)?;
/// let dir = std::env::temp_dir().join(format!("dl_io_doc_{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("mlp.onnx");
/// export_onnx(&model, &path, &OnnxExportOptions::default())?;
/// // Python: onnxruntime.InferenceSession("mlp.onnx").run(None, {"input": x})
/// let weights = StateDict::from_onnx_file(&path)?;
/// assert_eq!(weights.get("0.weight"), to_pytorch_state_dict(&model).get("0.weight"));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn export_onnx<M: OnnxExport>(
    model: &M,
    path: impl AsRef<Path>,
    options: &OnnxExportOptions,
) -> Result<(), OnnxError> {
    let bytes = model.to_onnx_bytes(options)?;
    write_atomically(path.as_ref(), &bytes)
}

/// [`crate::write_atomically`], with its I/O error as an [`OnnxError`].
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), OnnxError> {
    Ok(crate::atomic::write_atomically_io(path, bytes)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::fs;

    use super::*;
    use crate::onnx::builder::{Dim, shape_of};
    use crate::to_pytorch_state_dict;
    use dl_core::BackendKind;
    use dl_models::{
        CnnConfig, LstmClassifierConfig, MlpConfig, ScratchMlpConfig, ScratchOutput,
        TransformerClassifierConfig,
    };
    use onnx_ir::NodeProto as Node;
    use std::collections::BTreeSet;

    type Graph = GraphProto;

    fn decode<M: OnnxExport>(model: &M, options: &OnnxExportOptions) -> Graph {
        let bytes = model.to_onnx_bytes(options).unwrap();
        let decoded = ModelProto::parse_from_bytes(&bytes).unwrap();
        assert_eq!(decoded.ir_version, IR_VERSION);
        let opsets: Vec<(&str, i64)> = decoded
            .opset_import
            .iter()
            .map(|o| (o.domain.as_str(), o.version))
            .collect();
        assert_eq!(opsets, [("", 17)]);
        assert_eq!(decoded.producer_name, "dl-rs");
        decoded.graph.into_option().unwrap()
    }

    /// Every node input is a graph input, an initializer or an earlier node's output (the
    /// topological order ONNX requires), every value is produced once, and the outputs exist.
    fn check_wiring(graph: &Graph) {
        let mut defined: BTreeSet<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
        defined.extend(graph.initializer.iter().map(|t| t.name.as_str()));
        defined.insert("");
        for node in &graph.node {
            for input in &node.input {
                assert!(
                    defined.contains(input.as_str()),
                    "{} reads undefined {input}",
                    node.name
                );
            }
            for output in &node.output {
                assert!(defined.insert(output), "{output} is produced twice");
            }
        }
        for output in &graph.output {
            assert!(defined.contains(output.name.as_str()), "{}", output.name);
        }
    }

    fn ops(graph: &Graph) -> Vec<&str> {
        graph.node.iter().map(|n| n.op_type.as_str()).collect()
    }

    fn node<'a>(graph: &'a Graph, op: &str) -> &'a Node {
        graph.node.iter().find(|n| n.op_type == op).unwrap()
    }

    fn int_attr(node: &Node, name: &str) -> i64 {
        node.attribute.iter().find(|a| a.name == name).unwrap().i
    }

    fn initializer_names(graph: &Graph) -> BTreeSet<&str> {
        graph.initializer.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn mlp_graph_is_gemm_relu_with_pytorch_names() {
        let device = BackendKind::Flex.device().unwrap();
        let model = MlpConfig::new()
            .with_input_size(6)
            .with_hidden_sizes(vec![5, 4])
            .with_num_classes(3)
            .init(&device)
            .unwrap();
        let graph = decode(&model, &OnnxExportOptions::default());
        check_wiring(&graph);
        assert_eq!(ops(&graph), ["Gemm", "Relu", "Gemm", "Relu", "Gemm"]);
        assert_eq!(int_attr(node(&graph, "Gemm"), "transB"), 1);
        let state = to_pytorch_state_dict(&model);
        assert_eq!(initializer_names(&graph), state.keys().collect());
        assert_eq!(graph.name, "Mlp");
        assert_eq!(graph.input[0].name, "input");
        assert_eq!(
            shape_of(&graph.input[0]),
            Some(vec![Dim::Param("batch".into()), Dim::Value(6)])
        );
        assert_eq!(graph.output[0].name, "logits");
        assert_eq!(
            shape_of(&graph.output[0]),
            Some(vec![Dim::Param("batch".into()), Dim::Value(3)])
        );
        // A fixed batch replaces the symbol.
        let graph = decode(&model, &OnnxExportOptions::new().with_batch_size(2));
        assert_eq!(shape_of(&graph.input[0]).unwrap()[0], Dim::Value(2));
    }

    #[test]
    fn cnn_graph_pads_one_and_checks_the_image_size() {
        let device = BackendKind::Flex.device().unwrap();
        let model = CnnConfig::new()
            .with_conv_channels([2, 3, 4])
            .with_hidden_size(5)
            .init(&device)
            .unwrap();
        let graph = decode(&model, &OnnxExportOptions::default());
        check_wiring(&graph);
        assert_eq!(
            ops(&graph),
            [
                "Conv", "Relu", "MaxPool", "Conv", "Relu", "MaxPool", "Conv", "Relu", "MaxPool",
                "Flatten", "Gemm", "Relu", "Gemm"
            ]
        );
        let conv = node(&graph, "Conv");
        let pads = conv.attribute.iter().find(|a| a.name == "pads").unwrap();
        assert_eq!(pads.ints, [1, 1, 1, 1]);
        let shape = shape_of(&graph.input[0]).unwrap();
        assert_eq!(shape[2], Dim::Param("height".into()));
        // 28 -> 14 -> 7 -> 3: 4 * 3 * 3 = 36 features, fc1's input.
        let graph = decode(&model, &OnnxExportOptions::new().with_image_size(28, 31));
        assert_eq!(shape_of(&graph.input[0]).unwrap()[3], Dim::Value(31));
        let err = model
            .to_onnx_bytes(&OnnxExportOptions::new().with_image_size(32, 32))
            .unwrap_err();
        assert!(
            err.to_string().contains("gives 64 features") && err.to_string().contains("36"),
            "{err}"
        );
    }

    #[test]
    fn lstm_graph_has_one_lstm_node_per_layer() {
        let device = BackendKind::Flex.device().unwrap();
        let model = LstmClassifierConfig::new()
            .with_input_size(3)
            .with_hidden_size(4)
            .with_num_layers(3)
            .init(&device)
            .unwrap();
        let graph = decode(&model, &OnnxExportOptions::default());
        check_wiring(&graph);
        let lstms: Vec<&Node> = graph.node.iter().filter(|n| n.op_type == "LSTM").collect();
        assert_eq!(lstms.len(), 3);
        assert_eq!(int_attr(lstms[0], "hidden_size"), 4);
        // X, W, R, B; the last layer also gives Y_h.
        assert_eq!(lstms[0].input.len(), 4);
        assert_eq!(lstms[2].output.len(), 2);
        assert_eq!(
            shape_of(&graph.input[0]),
            Some(vec![
                Dim::Param("batch".into()),
                Dim::Param("sequence".into()),
                Dim::Value(3)
            ])
        );
        let state = to_pytorch_state_dict(&model);
        assert_eq!(initializer_names(&graph), state.keys().collect());
    }

    #[test]
    fn transformer_graphs_for_tokens_and_patches() {
        let device = BackendKind::Flex.device().unwrap();
        for (patch, norm_first) in [(None, false), (Some(5), true)] {
            let model = TransformerClassifierConfig::new()
                .with_vocab_size(11)
                .with_d_model(8)
                .with_n_heads(2)
                .with_n_layers(2)
                .with_d_ff(6)
                .with_max_seq_length(7)
                .with_num_classes(3)
                .with_patch_size(patch)
                .with_norm_first(norm_first)
                .init(&device)
                .unwrap();
            let graph = decode(&model, &OnnxExportOptions::default());
            check_wiring(&graph);
            let ops = ops(&graph);
            assert_eq!(
                ops.iter().filter(|o| **o == "LayerNormalization").count(),
                4
            );
            assert_eq!(ops.iter().filter(|o| **o == "Softmax").count(), 2);
            assert_eq!(*ops.last().unwrap(), "Gemm");
            let norm = node(&graph, "LayerNormalization");
            let eps = norm.attribute.iter().find(|a| a.name == "epsilon").unwrap();
            assert_eq!(eps.f, 1e-5);
            let first = if patch.is_some() { "MatMul" } else { "Gather" };
            assert!(ops.contains(&first));
            let state = to_pytorch_state_dict(&model);
            assert_eq!(initializer_names(&graph), state.keys().collect());
            let err = model
                .to_onnx_bytes(&OnnxExportOptions::new().with_sequence_length(8))
                .unwrap_err();
            assert!(err.to_string().contains("max_seq_length 7"), "{err}");
        }
    }

    #[test]
    fn layer_norm_epsilon_is_read_from_the_module() {
        let device = BackendKind::Flex.device().unwrap();
        for eps in [1e-5, 1e-12, 0.25] {
            let norm = burn::nn::LayerNormConfig::new(4)
                .with_epsilon(eps)
                .init(&device);
            assert_eq!(graphs::layer_norm_epsilon(&norm), Some(eps));
        }
    }

    #[test]
    fn scratch_graph_ends_in_its_output_activation() {
        let device = BackendKind::Flex.device().unwrap();
        for (output, last) in [
            (ScratchOutput::Sigmoid, "Sigmoid"),
            (ScratchOutput::Softmax, "Softmax"),
        ] {
            let model = ScratchMlpConfig::new(vec![3, 4, 2])
                .with_output(output)
                .init(&device)
                .unwrap();
            let graph = decode(&model, &OnnxExportOptions::default());
            check_wiring(&graph);
            assert_eq!(ops(&graph), ["Gemm", "Relu", "Gemm", last]);
            assert_eq!(graph.output[0].name, "probabilities");
        }
    }

    #[test]
    fn zero_sizes_in_options_are_refused() {
        let device = BackendKind::Flex.device().unwrap();
        let model = MlpConfig::new()
            .with_input_size(2)
            .with_hidden_sizes(vec![])
            .init(&device)
            .unwrap();
        let err = model
            .to_onnx_bytes(&OnnxExportOptions::new().with_batch_size(0))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot export Mlp to ONNX: batch_size must be positive (got 0)"
        );
    }

    #[test]
    fn writes_atomically_and_reports_the_path() {
        let dir = std::env::temp_dir().join(format!("dl_io_onnx_atomic_{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.onnx");
        fs::write(&path, b"old").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
        let missing = dir.join("no/such/dir/m.onnx");
        let err = write_atomically(&missing, b"x").unwrap_err();
        assert!(matches!(err, OnnxError::Io { .. }), "{err}");
        assert!(err.to_string().contains("no/such/dir"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
