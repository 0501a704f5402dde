//! The resolved configuration of a training run: defaults, then the `--config` TOML file, then
//! the command line. Written to every run folder as `config.toml`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use dl_optim::ScheduleConfig;
use serde::{Deserialize, Serialize};

use crate::cli::TrainArgs;
use crate::data::{DEFAULT_VAL_FRACTION, default_data_dir, default_series_path};

pub use dl_models::ModelKind;

/// The optimizers of dl-optim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam (PyTorch's defaults).
    Adam,
    /// AdamW (decoupled weight decay 0.01).
    Adamw,
    /// Plain SGD.
    Sgd,
    /// RMSprop.
    Rmsprop,
}

/// A learning-rate schedule: a short name, or a full dl-optim schedule table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ScheduleChoice {
    /// `fixed`, `cosine` (to 0 over the whole run) or `step` (halve each epoch).
    Named(String),
    /// Any [`ScheduleConfig`], with steps counted in optimizer steps.
    Custom(ScheduleConfig),
}

impl ScheduleChoice {
    /// Parse the `--schedule` value: a name or a JSON schedule.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.starts_with('{') {
            let config: ScheduleConfig = serde_json::from_str(text)
                .with_context(|| format!("--schedule `{text}` is not a valid JSON schedule"))?;
            return Ok(Self::Custom(config));
        }
        let choice = Self::Named(text.to_string());
        choice.check()?;
        Ok(choice)
    }

    fn check(&self) -> Result<()> {
        match self {
            Self::Named(name) if !["fixed", "cosine", "step"].contains(&name.as_str()) => bail!(
                "unknown schedule `{name}`, expected fixed, cosine, step or a schedule table{}",
                suggestion(name, &["fixed", "cosine", "step"])
            ),
            _ => Ok(()),
        }
    }

    /// The dl-optim schedule for a run of `total_steps` optimizer steps of which
    /// `steps_per_epoch` make an epoch.
    pub fn resolve(&self, steps_per_epoch: usize, total_steps: usize) -> ScheduleConfig {
        match self {
            Self::Custom(config) => config.clone(),
            Self::Named(name) => match name.as_str() {
                "cosine" => ScheduleConfig::Cosine {
                    t_max: total_steps.max(1),
                    eta_min: 0.0,
                },
                "step" => ScheduleConfig::Step {
                    step_size: steps_per_epoch.max(1),
                    gamma: 0.5,
                },
                _ => ScheduleConfig::Fixed,
            },
        }
    }
}

/// Every setting of a training run, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The model.
    pub model: ModelKind,
    /// Backend name (parsed by `dl_core::BackendKind`).
    pub backend: String,
    /// Total epochs.
    pub epochs: usize,
    /// Samples (digits or windows) per batch.
    pub batch_size: usize,
    /// Base learning rate.
    pub lr: f64,
    /// Optimizer (ignored by `scratch`, which does plain gradient descent).
    pub optimizer: OptimizerKind,
    /// Learning-rate schedule.
    pub schedule: ScheduleChoice,
    /// Global gradient-norm clipping, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_grad_norm: Option<f64>,
    /// Seed of weights, data order and dropout.
    pub seed: u64,
    /// Data folder (digits) or csv file (the forecast's series).
    pub data: PathBuf,
    /// Output folder.
    pub out: PathBuf,
    /// At most this many digits per split (forecast: windows per part, the earliest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Fraction of the training digits held out (seeded) as the validation set, on which the
    /// best checkpoint is chosen; for `forecast`, the fraction of the weeks just before the
    /// test part (the last 15%) that validate.
    #[serde(default = "default_val_fraction")]
    pub val_fraction: f64,
    /// `forecast` only: weeks of input per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<usize>,
}

/// The window of `forecast` used when none is given: a year of weeks.
pub const DEFAULT_WINDOW: usize = 52;

impl RunConfig {
    /// The forecast's window (its default when the configuration names none).
    pub fn window(&self) -> usize {
        self.window.unwrap_or(DEFAULT_WINDOW)
    }
}

/// The validation fraction used when none is given.
pub fn default_val_fraction() -> f64 {
    0.1
}

/// The keys a `--config` file may hold.
pub const CONFIG_KEYS: [&str; 14] = [
    "model",
    "backend",
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "schedule",
    "clip_grad_norm",
    "seed",
    "data",
    "out",
    "limit",
    "val_fraction",
    "window",
];

/// Settings as a `--config` file gives them: any subset of [`CONFIG_KEYS`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    model: Option<ModelKind>,
    backend: Option<String>,
    epochs: Option<usize>,
    batch_size: Option<usize>,
    lr: Option<f64>,
    optimizer: Option<OptimizerKind>,
    schedule: Option<ScheduleChoice>,
    clip_grad_norm: Option<f64>,
    seed: Option<u64>,
    data: Option<PathBuf>,
    out: Option<PathBuf>,
    limit: Option<usize>,
    val_fraction: Option<f64>,
    window: Option<usize>,
}

/// The learning rate used when none is given.
pub fn default_lr(model: ModelKind, optimizer: OptimizerKind) -> f64 {
    match (model, optimizer) {
        (ModelKind::Scratch, _) => 0.1,
        (ModelKind::Forecast, OptimizerKind::Sgd) => 0.05,
        (ModelKind::Forecast, _) => FORECAST_LR,
        (_, OptimizerKind::Sgd) => 0.05,
        _ => 1e-3,
    }
}

/// `dl train forecast`'s default learning rate (Adam, AdamW, RMSprop).
pub const FORECAST_LR: f64 = 0.005;
/// `dl train forecast`'s default epochs.
pub const FORECAST_EPOCHS: usize = 30;

/// The epochs used when none are given.
pub fn default_epochs(model: ModelKind) -> usize {
    if model.is_forecast() {
        FORECAST_EPOCHS
    } else {
        5
    }
}

/// Defaults, then the `--config` file, then the command line.
pub fn resolve(args: &TrainArgs) -> Result<RunConfig> {
    let file = match &args.config {
        Some(path) => read_file_config(path)?,
        None => FileConfig::default(),
    };
    let model = args.model.or(file.model).context(
        "no model given: name one (mlp, cnn, image-cnn, lstm, transformer, scratch, forecast) or set `model` in --config",
    )?;
    let optimizer = args
        .optimizer
        .or(file.optimizer)
        .unwrap_or(OptimizerKind::Adam);
    let schedule = match &args.schedule {
        Some(text) => ScheduleChoice::parse(text)?,
        None => file
            .schedule
            .unwrap_or_else(|| ScheduleChoice::Named("fixed".into())),
    };
    schedule.check()?;
    let config = RunConfig {
        model,
        backend: args
            .backend
            .clone()
            .or(file.backend)
            .unwrap_or_else(|| "flex".into()),
        epochs: args
            .epochs
            .or(file.epochs)
            .unwrap_or_else(|| default_epochs(model)),
        batch_size: args.batch_size.or(file.batch_size).unwrap_or(64),
        lr: args
            .lr
            .or(file.lr)
            .unwrap_or_else(|| default_lr(model, optimizer)),
        optimizer,
        schedule,
        clip_grad_norm: args.clip_grad_norm.or(file.clip_grad_norm),
        seed: args.seed.or(file.seed).unwrap_or(42),
        data: args.data.clone().or(file.data).unwrap_or_else(|| {
            if model.is_forecast() {
                default_series_path()
            } else {
                default_data_dir()
            }
        }),
        out: args
            .out
            .clone()
            .or(file.out)
            .unwrap_or_else(|| PathBuf::from("runs").join(model.name())),
        limit: args.limit.or(file.limit),
        val_fraction: args.val_fraction.or(file.val_fraction).unwrap_or_else(|| {
            if model.is_forecast() {
                DEFAULT_VAL_FRACTION
            } else {
                default_val_fraction()
            }
        }),
        window: args
            .window
            .or(file.window)
            .or(model.is_forecast().then_some(DEFAULT_WINDOW)),
    };
    check(&config)?;
    Ok(config)
}

/// Values no run can use.
pub fn check(config: &RunConfig) -> Result<()> {
    if config.epochs == 0 {
        bail!("epochs is 0, expected at least 1");
    }
    if config.batch_size == 0 {
        bail!("batch_size is 0, expected at least 1");
    }
    if !(config.lr.is_finite() && config.lr > 0.0) {
        bail!("lr is {}, expected a positive number", config.lr);
    }
    if let Some(norm) = config.clip_grad_norm
        && !(norm.is_finite() && norm > 0.0)
    {
        bail!("clip_grad_norm is {norm}, expected a positive number");
    }
    if !(config.val_fraction > 0.0 && config.val_fraction < 1.0) {
        bail!(
            "val_fraction is {}, expected a fraction strictly between 0 and 1 of the training digits to validate on",
            config.val_fraction
        );
    }
    if config.limit == Some(0) {
        bail!("limit is 0, expected at least 1 digit");
    }
    match config.window {
        Some(_) if !config.model.is_forecast() => bail!(
            "window applies to `forecast` only, not to `{}`",
            config.model.name()
        ),
        Some(0) => bail!("window is 0, expected at least 1 week of input"),
        _ => {}
    }
    config.backend.parse::<dl_core::BackendKind>()?;
    Ok(())
}

fn read_file_config(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    for key in table.keys() {
        if !CONFIG_KEYS.contains(&key.as_str()) {
            bail!(
                "{}: unknown key `{key}`{}; valid keys: {}",
                path.display(),
                suggestion(key, &CONFIG_KEYS),
                CONFIG_KEYS.join(", ")
            );
        }
    }
    toml::from_str(&text).with_context(|| format!("{}: a value has the wrong type", path.display()))
}

/// ` (did you mean `x`?)` for the closest valid name, or nothing when none is close.
fn suggestion(name: &str, valid: &[&str]) -> String {
    valid
        .iter()
        .map(|v| (strsim::jaro_winkler(name, v), v))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, v)| format!(" (did you mean `{v}`?)"))
        .unwrap_or_default()
}

/// The resolved configuration as TOML.
pub fn to_toml(config: &RunConfig) -> Result<String> {
    toml::to_string_pretty(config).context("the run configuration does not serialise to TOML")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn args_with_config(text: &str) -> (TrainArgs, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        std::fs::write(&path, text).unwrap();
        let args = TrainArgs {
            config: Some(path),
            ..Default::default()
        };
        (args, dir)
    }

    #[test]
    fn file_then_command_line() {
        let (mut args, _dir) = args_with_config(
            "model = \"cnn\"\nepochs = 3\nlr = 0.01\nschedule = { type = \"step\", step_size = 10 }\n",
        );
        args.epochs = Some(7);
        let config = resolve(&args).unwrap();
        assert_eq!(config.model, ModelKind::Cnn);
        assert_eq!(config.epochs, 7);
        assert_eq!(config.lr, 0.01);
        assert!(matches!(
            config.schedule,
            ScheduleChoice::Custom(ScheduleConfig::Step { step_size: 10, .. })
        ));
        // The resolved config reads back as a config file.
        let text = to_toml(&config).unwrap();
        let (args, _dir2) = args_with_config(&text);
        assert_eq!(resolve(&args).unwrap(), config);
    }

    #[test]
    fn unknown_key_names_the_closest() {
        let (args, _dir) = args_with_config("model = \"mlp\"\nepoch = 3\n");
        let msg = format!("{:#}", resolve(&args).unwrap_err());
        assert!(
            msg.contains("unknown key `epoch`") && msg.contains("did you mean `epochs`"),
            "{msg}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        assert!(
            ScheduleChoice::parse("cosin")
                .unwrap_err()
                .to_string()
                .contains("did you mean `cosine`")
        );
        let (mut args, _dir) = args_with_config("model = \"mlp\"\n");
        args.backend = Some("metal".into());
        assert!(format!("{:#}", resolve(&args).unwrap_err()).contains("`metal`"));
    }
}
