//! The command line, as clap derive structures.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{ModelKind, OptimizerKind};
use crate::data::Split;

/// Train, evaluate and inspect the chapter's networks on MNIST digits.
#[derive(Debug, Parser)]
#[command(name = "dl", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model (digits, or `forecast` on the CO2 series); writes metrics, plots,
    /// checkpoints and the resolved config to --out.
    Train(TrainArgs),
    /// Accuracy, loss and confusion matrix of a checkpoint on a data split (forecast: MAE and
    /// the naive baselines).
    Eval(EvalArgs),
    /// Class and probabilities of given digits (by index in a split, or 28x28 PNG files);
    /// forecast: the next week's CO2.
    Predict(PredictArgs),
    /// Heat maps of a trained Transformer's attention weights, every layer and head, as PNG.
    Attention(AttentionArgs),
    /// Convert weights between dl checkpoints, safetensors, .pt and ONNX.
    Convert(ConvertArgs),
    /// A weights file's tensors and the network they are (any dl checkpoint, .pt/.pth,
    /// safetensors or ONNX file).
    Info(InfoArgs),
    /// Train the MLP, CNN, LSTM and Transformer on the committed digits; summary table + plots.
    Demo(DemoArgs),
}

/// Options of `dl train`; each (but --config, --resume, --overwrite, --quiet, --log-json) may
/// also be given in the --config file, and the command line wins.
#[derive(Debug, Args, Default)]
pub struct TrainArgs {
    /// The model: mlp, cnn, image-cnn, lstm, transformer, scratch (digits) or forecast (the
    /// weekly CO2 series).
    pub model: Option<ModelKind>,
    /// Backend: flex (default), ndarray, tch, tch-cuda, wgpu, wgpu-vulkan or cuda.
    #[arg(long)]
    pub backend: Option<String>,
    /// Total number of epochs (a resumed run continues up to this number).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per batch.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Learning rate (default depends on optimizer and model).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Optimizer.
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Learning-rate schedule: fixed, cosine, step (halve each epoch), or a JSON schedule such
    /// as '{"type":"step","step_size":100,"gamma":0.5}'.
    #[arg(long)]
    pub schedule: Option<String>,
    /// Clip the global gradient norm to this value.
    #[arg(long)]
    pub clip_grad_norm: Option<f64>,
    /// Seed of the weights, the data order and dropout.
    #[arg(long)]
    pub seed: Option<u64>,
    /// A TOML file with any of the options above (keys as the long names, `_` for `-`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output folder (default runs/MODEL).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Data folder holding train.safetensors and test.safetensors (default: the committed
    /// fixtures/mnist, 8,000 training and 2,000 test digits); for forecast a `date,co2` csv
    /// (default: the committed fixtures/co2/co2.csv).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Use at most this many digits of each split (forecast: windows of each part).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Fraction of the training digits held out (seeded) as the validation set: the best
    /// checkpoint is the one of highest validation accuracy [default: 0.1]. For forecast: the
    /// fraction of the weeks before the test part (the last 15%) that validate, the best
    /// checkpoint being the one of lowest validation MAE [default: 0.15].
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// forecast only: weeks of input per window [default: 52].
    #[arg(long)]
    pub window: Option<usize>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Replace an existing run in --out.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print one JSON object per epoch and event on stdout instead of a progress bar.
    #[arg(long, conflicts_with = "quiet")]
    pub log_json: bool,
}

/// Where the digits to evaluate come from.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// Data folder holding train.safetensors and test.safetensors (default: the committed
    /// fixtures/mnist); for a forecast checkpoint a `date,co2` csv (default: the committed
    /// fixtures/co2/co2.csv).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Which split (forecast: the training or the test part of the series).
    #[arg(long, value_enum, default_value = "test")]
    pub split: Split,
    /// Backend to run on.
    #[arg(long, default_value = "flex")]
    pub backend: String,
    /// Refuse a checkpoint of another model.
    #[arg(long)]
    pub model: Option<ModelKind>,
}

/// Options of `dl eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A checkpoint written by `dl train` (for example runs/mlp/best.safetensors).
    pub checkpoint: PathBuf,
    /// Data, split, backend.
    #[command(flatten)]
    pub data: DataArgs,
    /// Use at most this many digits.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Images per batch.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `dl predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A checkpoint written by `dl train`.
    pub checkpoint: PathBuf,
    /// 28x28 PNG images (grey or colour, 8 bits; white ink on black as in MNIST).
    pub images: Vec<PathBuf>,
    /// Indices of digits in the split (repeatable or comma-separated). Forecast: week indices
    /// of the series to predict from the weeks before them (default: the week after the
    /// series).
    #[arg(long, value_delimiter = ',')]
    pub index: Vec<usize>,
    /// Data, split, backend.
    #[command(flatten)]
    pub data: DataArgs,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `dl attention`.
#[derive(Debug, Args)]
pub struct AttentionArgs {
    /// A Transformer checkpoint written by `dl train transformer`.
    pub checkpoint: PathBuf,
    /// Index of the digit in the split (default: the first digit the model classifies
    /// correctly).
    #[arg(long)]
    pub index: Option<usize>,
    /// Data, split, backend.
    #[command(flatten)]
    pub data: DataArgs,
    /// The PNG to write.
    #[arg(long, default_value = "attention.png")]
    pub out: PathBuf,
    /// Also print the drawn weights as JSON (`weights[layer][head]`: tokens x tokens values,
    /// query-major) with the label, prediction and probabilities, instead of the caption.
    #[arg(long)]
    pub json: bool,
}

/// Options of `dl convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// A dl checkpoint, or a PyTorch state dict (.pt/.pth/.safetensors) or ONNX file.
    pub input: PathBuf,
    /// The file to write: .safetensors (PyTorch state dict), .pt/.pth (torch.save format),
    /// .onnx, or .ckpt.safetensors (a dl checkpoint, for `dl eval`/`predict`/`info`).
    pub output: PathBuf,
    /// The model the weights must be (checked against the one inferred from the weights, or
    /// against the model a dl checkpoint holds).
    #[arg(long)]
    pub model: Option<ModelKind>,
    /// Write a dl checkpoint even when the output name does not end in .ckpt.safetensors.
    #[arg(long)]
    pub checkpoint: bool,
    /// Key renaming and the settings the weights cannot tell.
    #[command(flatten)]
    pub infer: InferArgs,
}

/// How `dl info` and `dl convert` read a plain state dict: key renaming first, then the
/// settings the architecture inference cannot read from the weights.
#[derive(Debug, Args, Default)]
pub struct InferArgs {
    /// Remove this prefix from every key that has it (`module.` from `nn.DataParallel`).
    #[arg(long)]
    pub strip_prefix: Option<String>,
    /// Rename keys: REGEX=REPLACEMENT, as Python's `re.sub` (`$1` for groups); repeatable,
    /// applied in order after --strip-prefix.
    #[arg(long, value_name = "REGEX=REPLACEMENT")]
    pub remap: Vec<String>,
    /// Attention heads of a Transformer [default: 8, the chapter's].
    #[arg(long)]
    pub heads: Option<usize>,
    /// Length of a Transformer's positional table, when the file holds none [default: 100].
    #[arg(long)]
    pub max_seq_length: Option<usize>,
    /// Pre-norm Transformer blocks (the chapter's are post-norm).
    #[arg(long)]
    pub norm_first: bool,
    /// Height and width of a CNN's input (the weights fix it only up to the floor of /8)
    /// [default: 28 or 64 where they fit, else 8 x the pooled size].
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Dropout probability recorded in the configuration [default: the model's].
    #[arg(long)]
    pub dropout: Option<f64>,
}

/// Options of `dl info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// A dl checkpoint, a PyTorch state dict (.pt/.pth, zip or legacy format), a plain
    /// safetensors file or an ONNX model.
    pub checkpoint: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Key renaming and the settings the weights cannot tell.
    #[command(flatten)]
    pub infer: InferArgs,
}

/// Options of `dl demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Data folder (default: the committed fixtures/mnist, 8,000 training and 2,000 test digits).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// A quick look (about a minute): only the first 800 digits of each split.
    #[arg(long)]
    pub quick: bool,
    /// Output folder; its runs are replaced.
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Epochs of every model (default: each model's demo setting).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Use at most this many digits of each split.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Which models (comma-separated; any of mlp, cnn, image-cnn, lstm, transformer, scratch,
    /// forecast).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mlp,cnn,image-cnn,lstm,transformer,scratch,forecast"
    )]
    pub models: Vec<ModelKind>,
    /// Backend.
    #[arg(long, default_value = "flex")]
    pub backend: String,
    /// Print only the summary table.
    #[arg(long, short)]
    pub quiet: bool,
}
