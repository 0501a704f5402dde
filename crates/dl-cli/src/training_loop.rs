//! The training loop: load -> model -> loss -> backward -> optimizer -> metrics -> checkpoint,
//! with NaN detection, Ctrl-C handling and resumption.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Tensor};
use dl_core::{BackendKind, SeededRng, seed_device};
use dl_io::CheckpointMeta;
use dl_optim::{AdamConfig, AdamWConfig, GradClip, LrSchedule, NormType, RmsPropConfig, SgdConfig};

use crate::config::{ModelKind, OptimizerKind, RunConfig, to_toml};
use crate::data::{Batcher, Digits};
use crate::metrics::{self, EpochMetrics, Summary};
use crate::model::{DigitModel, label_tensor, tensor2};
use crate::output::{Existing, RunFolder};
use crate::plot;
use crate::progress::{Reporter, Score};
use crate::task::Task;

/// How a run ended.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// Metrics of every epoch so far (including those of a resumed run's earlier part).
    pub history: Vec<EpochMetrics>,
    /// Parameters of the model.
    pub parameters: usize,
    /// Seconds this invocation trained.
    pub seconds: f64,
    /// Whether Ctrl-C stopped it.
    pub interrupted: bool,
    /// The run folder.
    pub folder: RunFolder,
    /// The best epoch and its test result (none when Ctrl-C stopped the run).
    pub summary: Option<Summary>,
}

/// The epoch (from 1) of highest validation accuracy (forecast: lowest validation MAE), the
/// first on ties; 0 with no epochs.
pub fn best_epoch(history: &[EpochMetrics]) -> usize {
    history
        .iter()
        .fold(None::<&EpochMetrics>, |best, m| match best {
            Some(b) if b.score() >= m.score() => Some(b),
            _ => Some(m),
        })
        .map_or(0, |m| m.epoch)
}

/// Everything that changes as training proceeds.
struct State {
    model: DigitModel,
    optimizer: Option<ModuleOptimizer>,
    rng: SeededRng,
    step: u64,
    history: Vec<EpochMetrics>,
}

/// What stays fixed while a run trains: its configuration, devices, data, folder and step
/// rules.
struct Run<'a> {
    config: &'a RunConfig,
    /// The training device (autodiff, except for the scratch network).
    device: Device,
    /// The same backend without autodiff, for validation and the final test.
    eval_device: Device,
    task: Task,
    folder: RunFolder,
    steps_per_epoch: usize,
    schedule: Arc<dyn LrSchedule>,
    clip: Option<GradClip>,
}

/// Train `config.model` as configured, writing into `config.out`: a digit model on the
/// digits, `forecast` on the weekly series (the same loop; [`Task`] holds what differs).
pub fn train(
    config: &RunConfig,
    existing: Existing,
    reporter: &mut Reporter,
    stop: &Arc<AtomicBool>,
) -> Result<TrainOutcome> {
    let (run, mut state) = Run::start(config, existing)?;
    let parameters = state.model.num_params();
    let start_epoch = state.history.len();
    if start_epoch > 0 {
        run.report_resume(&state, reporter);
    }
    let started = Instant::now();
    let mut best = state
        .history
        .iter()
        .map(EpochMetrics::score)
        .fold(f64::NEG_INFINITY, f64::max);
    for epoch in start_epoch..config.epochs {
        let Some(metrics) = run.epoch(&mut state, epoch, start_epoch, reporter, stop)? else {
            return Ok(TrainOutcome {
                history: state.history,
                parameters,
                seconds: started.elapsed().as_secs_f64(),
                interrupted: true,
                folder: run.folder,
                summary: None,
            });
        };
        run.finish_epoch(&mut state, metrics, &mut best, reporter)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let summary = test_best(
        config,
        &run.folder,
        &state.history,
        &run.task,
        &run.eval_device,
    )?;
    metrics::write_summary(&run.folder, &summary)?;
    Ok(TrainOutcome {
        history: state.history,
        parameters,
        seconds,
        interrupted: false,
        folder: run.folder,
        summary: Some(summary),
    })
}

impl<'a> Run<'a> {
    /// Devices, data and folder of `config`, and the state to start from: a new model, or
    /// the run folder's last checkpoint with `Existing::Resume`.
    fn start(config: &'a RunConfig, existing: Existing) -> Result<(Self, State)> {
        let backend: BackendKind = config.backend.parse()?;
        // The scratch network computes its own gradients, so it runs without autodiff.
        let device = if config.model == ModelKind::Scratch {
            backend.device()?
        } else {
            backend.autodiff_device()?
        };
        let eval_device = backend.device()?;
        seed_device(&device, config.seed);
        // The validation digits come out of the training split, seeded (forecast: the weeks
        // before the test part); the test data is read only at the end, for the chosen
        // checkpoint.
        let task = Task::load(config)?;
        let folder = RunFolder::prepare(&config.out, existing)?;
        let state = if existing == Existing::Resume {
            resume(config, &folder, &device)?
        } else {
            State {
                model: DigitModel::build(
                    config.model,
                    config.model.default_config().to_json(),
                    &device,
                )?,
                optimizer: build_optimizer(config)?,
                rng: SeededRng::new(config.seed),
                step: 0,
                history: Vec::new(),
            }
        };
        dl_io::write_atomically(&folder.file("config.toml"), to_toml(config)?.as_bytes())?;
        let steps_per_epoch = Batcher {
            batch_size: config.batch_size,
        }
        .batch_count(task.train_len());
        let schedule = config
            .schedule
            .resolve(steps_per_epoch, steps_per_epoch * config.epochs)
            .build(config.lr)?;
        let clip = config.clip_grad_norm.map(|max_norm| GradClip::Norm {
            max_norm,
            norm_type: NormType::Two,
            error_if_nonfinite: false,
        });
        let run = Run {
            config,
            device,
            eval_device,
            task,
            folder,
            steps_per_epoch,
            schedule,
            clip,
        };
        Ok((run, state))
    }

    fn report_resume(&self, state: &State, reporter: &mut Reporter) {
        let start_epoch = state.history.len();
        reporter.event(
            "resume",
            &format!(
                "resuming {} from epoch {start_epoch}, step {} ({})",
                self.config.model.name(),
                state.step,
                self.folder.last().display()
            ),
            serde_json::json!({"epoch": start_epoch, "step": state.step}),
        );
    }

    /// Train epoch `epoch` (from 0) and validate; `None` when Ctrl-C stopped it (the
    /// checkpoint to resume from is then saved).
    fn epoch(
        &self,
        state: &mut State,
        epoch: usize,
        start_epoch: usize,
        reporter: &mut Reporter,
        stop: &AtomicBool,
    ) -> Result<Option<EpochMetrics>> {
        let config = self.config;
        let epoch_started = Instant::now();
        let rng_at_start = state.rng;
        let order = Batcher::shuffled_order(self.task.train_len(), &mut state.rng);
        reporter.start_epoch(epoch + 1, config.epochs, self.steps_per_epoch);
        let (mut loss_sum, mut score_sum, mut seen) = (0.0f64, 0.0f64, 0usize);
        let mut lr = config.lr;
        // After a Ctrl-C the checkpoint holds the data order of the interrupted epoch and the
        // step reached in it: the resumed epoch replays the same order and skips the batches
        // already trained on, so no sample is seen twice.
        let done = if epoch == start_epoch {
            usize::try_from(state.step)
                .unwrap_or(usize::MAX)
                .saturating_sub(epoch * self.steps_per_epoch)
                .min(self.steps_per_epoch)
        } else {
            0
        };
        for (index, batch) in order
            .chunks(config.batch_size.max(1))
            .enumerate()
            .skip(done)
        {
            if stop.load(Ordering::SeqCst) {
                self.save_interrupted(state, epoch, rng_at_start, reporter)?;
                return Ok(None);
            }
            lr = self.schedule.lr(state.step as usize);
            let (loss, score) = train_step(state, &self.task, batch, &self.device, lr, self.clip)?;
            if !loss.is_finite() {
                bail!(
                    "the loss became {loss} at epoch {}, batch {} (step {}), so training stopped: {}. Try a lower --lr (now {:e}) or --clip-grad-norm",
                    epoch + 1,
                    index + 1,
                    state.step + 1,
                    last_good(&self.folder, epoch),
                    config.lr
                );
            }
            state.step += 1;
            loss_sum += f64::from(loss) * batch.len() as f64;
            score_sum += score;
            seen += batch.len();
            let rate = seen as f64 / epoch_started.elapsed().as_secs_f64().max(1e-9);
            let (accuracy, mae) = self.task.train_scores(score_sum, seen);
            reporter.step(loss_sum / seen as f64, Score::of(accuracy, mae), rate);
        }
        let train_seconds = epoch_started.elapsed().as_secs_f64();
        let val = self
            .task
            .validate(&state.model.valid(), &self.eval_device)?;
        let (train_accuracy, train_mae) = self.task.train_scores(score_sum, seen);
        Ok(Some(EpochMetrics {
            epoch: epoch + 1,
            step: state.step,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy,
            train_mae,
            val_loss: val.loss,
            val_accuracy: val.accuracy,
            val_mae: val.mae,
            lr,
            seconds: epoch_started.elapsed().as_secs_f64(),
            samples_per_second: seen as f64 / train_seconds.max(1e-9),
        }))
    }

    /// Ctrl-C during epoch `epoch`: save where it stands, with the epoch's data order.
    fn save_interrupted(
        &self,
        state: &State,
        epoch: usize,
        rng_at_start: SeededRng,
        reporter: &mut Reporter,
    ) -> Result<()> {
        let meta = meta(self.config, state.step, epoch, rng_at_start);
        let last = self.folder.last();
        state.model.save(&last, state.optimizer.as_ref(), &meta)?;
        reporter.event(
            "interrupted",
            &format!(
                "interrupted at epoch {}, step {}: saved {} (resume with --resume: the epoch continues with its next batch)",
                epoch + 1,
                state.step,
                last.display()
            ),
            serde_json::json!({"epoch": epoch + 1, "step": state.step, "checkpoint": last}),
        );
        Ok(())
    }

    /// After an epoch: the last (and, when it scores best so far, the best) checkpoint,
    /// the metrics files and the loss curves.
    fn finish_epoch(
        &self,
        state: &mut State,
        metrics: EpochMetrics,
        best: &mut f64,
        reporter: &mut Reporter,
    ) -> Result<()> {
        let meta = meta(self.config, state.step, metrics.epoch, state.rng);
        state
            .model
            .save(&self.folder.last(), state.optimizer.as_ref(), &meta)?;
        let is_best = metrics.score() > *best;
        if is_best {
            *best = metrics.score();
            state
                .model
                .save(&self.folder.best(), state.optimizer.as_ref(), &meta)?;
        }
        reporter.end_epoch(&metrics, is_best);
        state.history.push(metrics);
        metrics::write(&self.folder, &state.history)?;
        plot::curves(&self.folder, &state.history, self.config.model.name())?;
        Ok(())
    }
}

/// Evaluate `best.safetensors` once on the test data.
fn test_best(
    config: &RunConfig,
    folder: &RunFolder,
    history: &[EpochMetrics],
    task: &Task,
    device: &Device,
) -> Result<Summary> {
    let best_epoch = best_epoch(history);
    let Some(best) = history.iter().find(|m| m.epoch == best_epoch) else {
        bail!("the run has no finished epoch to test (--epochs 0?)");
    };
    let (model, _, _) = DigitModel::load(&folder.best(), device, None)?;
    task.test(config, folder, &model.valid(), best, device)
}

/// One step on the training samples at `batch` (positions in the task's training samples);
/// returns the batch's loss and its summed score (right predictions, or absolute error in
/// ppm).
fn train_step(
    state: &mut State,
    task: &Task,
    batch: &[usize],
    device: &Device,
    lr: f64,
    clip: Option<GradClip>,
) -> Result<(f32, f64)> {
    if let (Some(scratch), Task::Digits { train, .. }) = (state.model.as_scratch_mut(), task) {
        return scratch_step(scratch, train, batch, device, lr);
    }
    let out = task.batch_loss(&state.model, batch, device)?;
    // The score stays on the device until it is read back together with the loss: one host
    // sync per step.
    let read = Tensor::cat(vec![out.loss.clone().detach(), out.score], 0).into_data();
    let (value, score) = match read.iter::<f32>().collect::<Vec<_>>()[..] {
        [value, score] => (value, task.score_units(f64::from(score))),
        _ => bail!("internal: expected the loss and the batch's score"),
    };
    if !value.is_finite() {
        return Ok((value, score));
    }
    let optimizer = state
        .optimizer
        .as_mut()
        .context("internal: a trainable model without an optimizer")?;
    state.model = state.model.clone().step(out.loss, optimizer, lr, clip)?;
    Ok((value, score))
}

/// One step of the scratch network, which computes its own gradients.
fn scratch_step(
    scratch: &mut dl_models::ScratchMlp,
    train: &Digits,
    indices: &[usize],
    device: &Device,
    lr: f64,
) -> Result<(f32, f64)> {
    let batch = Batcher::batch(train, indices);
    let n = batch.len();
    let x = tensor2(&batch.images, n, device);
    let labels = label_tensor(&batch.labels, device);
    let right = scratch
        .try_logits(x.clone())?
        .argmax(1)
        .squeeze_dim::<1>(1)
        .equal(labels.clone())
        .int()
        .sum()
        .into_scalar::<i64>();
    let right = right.max(0) as f64;
    match scratch.train_step(x, labels, lr) {
        Ok(cost) => Ok((cost, right)),
        Err(dl_core::Error::NonFinite { value, .. }) => Ok((value as f32, right)),
        Err(e) => Err(e.into()),
    }
}

/// Where the run can be picked up after a NaN in epoch `epoch` (0-based).
fn last_good(folder: &RunFolder, epoch: usize) -> String {
    if epoch == 0 || !folder.last().exists() {
        "no checkpoint was written before it (the run diverged in its first epoch)".into()
    } else {
        format!(
            "the last good checkpoint is {} (end of epoch {epoch})",
            folder.last().display()
        )
    }
}

fn meta(config: &RunConfig, step: u64, epoch: usize, rng: SeededRng) -> CheckpointMeta {
    CheckpointMeta {
        model: config.model.name().to_string(),
        model_config: config.model.default_config().to_json(),
        training_config: serde_json::to_value(config).unwrap_or_default(),
        step,
        epoch: epoch as u64,
        rng_state: rng.state(),
    }
}

/// The optimizer of `config` (none for the scratch network).
pub fn build_optimizer(config: &RunConfig) -> Result<Option<ModuleOptimizer>> {
    if config.model == ModelKind::Scratch {
        return Ok(None);
    }
    let optimizer = match config.optimizer {
        OptimizerKind::Adam => AdamConfig::new().with_lr(config.lr).init()?,
        OptimizerKind::Adamw => AdamWConfig::new().with_lr(config.lr).init()?,
        OptimizerKind::Sgd => SgdConfig::new().with_lr(config.lr).init()?,
        OptimizerKind::Rmsprop => RmsPropConfig::new().with_lr(config.lr).init()?,
    };
    Ok(Some(optimizer))
}

fn resume(config: &RunConfig, folder: &RunFolder, device: &Device) -> Result<State> {
    let path = folder.last();
    let meta = dl_io::read_checkpoint_meta(&path)
        .with_context(|| format!("--resume: cannot read {}", path.display()))?;
    if meta.model != config.model.name() {
        bail!(
            "--resume: {} holds a `{}` model, not `{}`",
            path.display(),
            meta.model,
            config.model.name()
        );
    }
    let (model, optimizer, meta) = DigitModel::load(&path, device, build_optimizer(config)?)?;
    let mut history = metrics::read(folder)?;
    history.truncate(meta.epoch as usize);
    Ok(State {
        model,
        optimizer,
        rng: SeededRng::from_state(meta.rng_state),
        step: meta.step,
        history,
    })
}
