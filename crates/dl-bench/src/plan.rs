//! What to measure: the benchmark cases, their shapes, and the warm-up and repetition counts.
//!
//! The Rust runner writes the plan to a JSON file and `benches/pytorch/bench.py` reads it, so
//! both sides time exactly the same cases, shapes, warm-up and repetitions.

use std::fmt;
use std::str::FromStr;

use dl_models::ModelKind;
use serde::{Deserialize, Serialize};

/// One layer of dl-layers benchmarked on its own (forward pass only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// One `Lstm` layer, input 28, hidden 128, over `seq_len` steps.
    Lstm,
    /// `MultiHeadAttention` self-attention, embed 64, 8 heads, on `[batch, seq_len, 64]`.
    Attention,
    /// `ConvBlock` 1→32, 3x3, padding 1, ReLU, 2x2 max-pool on `[batch, 1, 28, 28]`.
    ConvBlock,
    /// `Dense` 784→512 with ReLU on `[batch, 784]`.
    Dense,
}

impl Layer {
    /// Every benchmarked layer, in the order the plan runs them.
    pub const ALL: [Layer; 4] = [
        Layer::Lstm,
        Layer::Attention,
        Layer::ConvBlock,
        Layer::Dense,
    ];

    /// The name in benchmark ids (`lstm_layer`, so that it differs from the `lstm` model).
    pub fn name(self) -> &'static str {
        match self {
            Layer::Lstm => "lstm_layer",
            Layer::Attention => "attention",
            Layer::ConvBlock => "conv_block",
            Layer::Dense => "dense",
        }
    }
}

/// What a case runs: a whole network of dl-models (named as [`ModelKind`] names it, in the
/// benchmark size of `cases.rs`) or one layer. In JSON and benchmark ids it is one string:
/// the model's [`ModelKind::case_name`] or the layer's [`Layer::name`].
///
/// ```
/// use dl_bench::{Layer, Subject};
/// use dl_models::ModelKind;
///
/// assert_eq!("transformer".parse(), Ok(Subject::Model(ModelKind::Transformer)));
/// assert_eq!(Subject::Layer(Layer::Lstm).name(), "lstm_layer");
/// assert!("scratch".parse::<Subject>().unwrap_err().contains("mlp, cnn, lstm, transformer"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Subject {
    /// A whole network: inference and a training step.
    Model(ModelKind),
    /// One layer: inference.
    Layer(Layer),
}

impl Subject {
    /// The networks the benchmarks time: the chapter's four (`Mlp` 784-512-256-10, `Cnn`,
    /// `LstmClassifier` on MNIST rows, `TransformerClassifier` on token ids).
    pub const MODELS: [ModelKind; 4] = [
        ModelKind::Mlp,
        ModelKind::Cnn,
        ModelKind::Lstm,
        ModelKind::Transformer,
    ];

    /// Every subject, models first, in the order the plan runs them.
    pub fn all() -> impl Iterator<Item = Subject> {
        Self::MODELS
            .into_iter()
            .map(Subject::Model)
            .chain(Layer::ALL.into_iter().map(Subject::Layer))
    }

    /// The name used in benchmark ids, JSON and the PyTorch script.
    pub fn name(self) -> &'static str {
        match self {
            Subject::Model(kind) => kind.case_name(),
            Subject::Layer(layer) => layer.name(),
        }
    }

    /// True for whole models (whose training step is benchmarked), false for single layers.
    pub fn is_model(self) -> bool {
        matches!(self, Subject::Model(_))
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Subject {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Subject::all()
            .find(|subject| subject.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Subject::all().map(Subject::name).collect();
                format!(
                    "unknown benchmark subject `{s}`, expected one of {}",
                    names.join(", ")
                )
            })
    }
}

impl TryFrom<String> for Subject {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Subject> for String {
    fn from(subject: Subject) -> String {
        subject.name().to_string()
    }
}

/// What one timed iteration does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// A forward pass without autodiff (PyTorch: `eval()` and `torch.inference_mode()`),
    /// ending with the output read back to the host.
    Inference,
    /// Forward, cross-entropy, backward, Adam update (lr 1e-3), loss read back to the host.
    Training,
}

impl Step {
    /// The name used in benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            Step::Inference => "infer",
            Step::Training => "train",
        }
    }
}

/// One benchmark: a subject, a step, a batch size and (for sequence models) a length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// Stable identifier, e.g. `mlp/train/b64`: the key that joins the Rust and PyTorch rows.
    pub id: String,
    /// What runs.
    pub subject: Subject,
    /// Inference or training step.
    pub step: Step,
    /// Batch size.
    pub batch: usize,
    /// Sequence length (time steps or tokens) for the LSTM and transformer subjects.
    pub seq_len: usize,
}

impl Case {
    /// A case with its id derived from subject, step and batch.
    pub fn new(subject: Subject, step: Step, batch: usize, seq_len: usize) -> Self {
        Self {
            id: format!("{}/{}/b{batch}", subject.name(), step.name()),
            subject,
            step,
            batch,
            seq_len,
        }
    }
}

/// Full measurements (the published numbers) or the quick CI smoke run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Chapter sizes, enough repetitions for a stable median.
    Full,
    /// Small batches and sequences, three repetitions: keeps the benchmarks compiling and
    /// running in CI; its numbers mean little.
    Quick,
}

impl Mode {
    /// `"full"` or `"quick"`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Quick => "quick",
        }
    }
}

/// Everything both sides need to time the same work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Full or quick.
    pub mode: Mode,
    /// Untimed iterations before measuring (allocators, caches, lazy initialisation).
    pub warmup: usize,
    /// Timed iterations; the median is reported.
    pub repetitions: usize,
    /// Intra-op threads on both sides (`RAYON_NUM_THREADS`, `torch.set_num_threads`).
    pub threads: usize,
    /// The cases, in the order they run.
    pub cases: Vec<Case>,
}

impl Plan {
    /// The plan for a mode, with `threads` threads on both sides.
    ///
    /// Full: inference at batch 1 and 64 and a training step at batch 64 for every model,
    /// each layer's forward at batch 64, sequences of 28 steps (the MNIST rows; the LSTM layer
    /// bench's 28 steps) and 64 tokens. Quick: batches 1 and 8, sequences of 8.
    pub fn new(mode: Mode, threads: usize) -> Self {
        let (big, seq, warmup, repetitions) = match mode {
            Mode::Full => (64, 28, 5, 30),
            Mode::Quick => (8, 8, 1, 3),
        };
        let tokens = match mode {
            Mode::Full => 64,
            Mode::Quick => 8,
        };
        let seq_of = |s: Subject| match s {
            Subject::Model(ModelKind::Transformer) | Subject::Layer(Layer::Attention) => tokens,
            Subject::Model(ModelKind::Lstm) | Subject::Layer(Layer::Lstm) => seq,
            _ => 0,
        };
        let mut cases = Vec::new();
        for subject in Subject::all() {
            let t = seq_of(subject);
            if subject.is_model() {
                cases.push(Case::new(subject, Step::Inference, 1, t));
                cases.push(Case::new(subject, Step::Inference, big, t));
                cases.push(Case::new(subject, Step::Training, big, t));
            } else {
                cases.push(Case::new(subject, Step::Inference, big, t));
            }
        }
        Self {
            mode,
            warmup,
            repetitions,
            threads,
            cases,
        }
    }

    /// Keep only the cases whose id contains one of `filters` (all cases when empty).
    pub fn filtered(mut self, filters: &[String]) -> Self {
        if !filters.is_empty() {
            self.cases
                .retain(|c| filters.iter().any(|f| c.id.contains(f.as_str())));
        }
        self
    }

    /// Keep only the cases whose id is one of `ids` exactly (all cases when empty): how
    /// `cargo xtask bench` times one case at a time on both sides.
    ///
    /// ```
    /// use dl_bench::{Mode, Plan};
    ///
    /// let plan = Plan::new(Mode::Quick, 1).only(&["lstm/infer/b1".to_string()]);
    /// let ids: Vec<&str> = plan.cases.iter().map(|c| c.id.as_str()).collect();
    /// assert_eq!(ids, ["lstm/infer/b1"]);
    /// ```
    pub fn only(mut self, ids: &[String]) -> Self {
        if !ids.is_empty() {
            self.cases.retain(|c| ids.contains(&c.id));
        }
        self
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn full_plan_has_every_model_step_and_layer() {
        let plan = Plan::new(Mode::Full, 2);
        let ids: Vec<&str> = plan.cases.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids.len(), 4 * 3 + 4);
        for id in [
            "mlp/infer/b1",
            "cnn/infer/b64",
            "lstm/train/b64",
            "transformer/train/b64",
            "lstm_layer/infer/b64",
            "attention/infer/b64",
            "conv_block/infer/b64",
            "dense/infer/b64",
        ] {
            assert!(ids.contains(&id), "{id} missing from {ids:?}");
        }
        let lstm = plan.cases.iter().find(|c| c.id == "lstm_layer/infer/b64");
        assert_eq!(lstm.unwrap().seq_len, 28);
    }

    #[test]
    fn plan_round_trips_through_json_with_snake_case_names() {
        let plan = Plan::new(Mode::Quick, 1);
        let json = serde_json::to_string(&plan).unwrap();
        assert!(json.contains(r#""subject":"lstm""#), "{json}");
        assert!(json.contains(r#""subject":"lstm_layer""#), "{json}");
        assert!(json.contains(r#""mode":"quick""#), "{json}");
        assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
    }

    #[test]
    fn every_subject_parses_from_its_name_and_nothing_else_does() {
        for subject in Subject::all() {
            assert_eq!(subject.name().parse::<Subject>(), Ok(subject));
        }
        assert_eq!(Subject::all().count(), 8);
        let err = serde_json::from_str::<Subject>(r#""lstm_classifier""#).unwrap_err();
        assert!(
            err.to_string().contains("unknown benchmark subject"),
            "{err}"
        );
    }

    #[test]
    fn filters_keep_matching_ids() {
        let plan = Plan::new(Mode::Quick, 1).filtered(&["train".to_string()]);
        assert_eq!(plan.cases.len(), 4);
        assert!(plan.cases.iter().all(|c| c.step == Step::Training));
    }

    #[test]
    fn only_keeps_exact_ids_where_a_filter_would_keep_more() {
        let lstm = Plan::new(Mode::Full, 1).filtered(&["lstm".to_string()]);
        assert_eq!(
            lstm.cases.len(),
            4,
            "the model's three cases and the layer's"
        );
        let one = lstm.only(&["lstm/infer/b64".to_string()]);
        let ids: Vec<&str> = one.cases.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["lstm/infer/b64"]);
        let none = Plan::new(Mode::Full, 1).only(&["lstm/infer".to_string()]);
        assert!(none.cases.is_empty(), "a prefix is not an id");
        assert_eq!(Plan::new(Mode::Full, 1).only(&[]).cases.len(), 16);
    }
}
