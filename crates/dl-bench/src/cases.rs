//! Each case as a closure that runs one iteration on a Burn device, ready to be timed.

use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Int, Tensor};
use dl_core::{BackendKind, Result, SeededRng, seed_device};
use dl_layers::{
    AttentionMask, ConvBlockConfig, DenseConfig, LstmConfig, MultiHeadAttentionConfig,
};
use dl_loss::CrossEntropyLossConfig;
use dl_models::{
    CnnConfig, LstmClassifierConfig, MlpConfig, ModelKind, TransformerClassifierConfig,
    TransformerInput,
};
use dl_optim::AdamConfig;

use crate::plan::{Case, Layer, Step, Subject};

/// One timed iteration. It returns a value read back from the device (the first output or
/// the loss), which forces Burn's asynchronous backends to finish the work inside the timing.
pub type Iteration = Box<dyn FnMut() -> Result<f32>>;

/// Learning rate of the benchmarked Adam step (the chapter's).
const LEARNING_RATE: f64 = 1e-3;

/// Seed of the parameters and data: every backend and PyTorch start from random data of
/// the same distribution (the values do not change the work done).
const SEED: u64 = 7;

/// Build the iteration for `case` on `backend`: parameters, inputs and optimizer state are
/// made here, outside the timing.
pub fn prepare(case: &Case, backend: BackendKind) -> Result<Iteration> {
    let device = match case.step {
        Step::Inference => backend.device()?,
        Step::Training => backend.autodiff_device()?,
    };
    seed_device(&device, SEED);
    match case.subject {
        Subject::Model(kind) => model_case(kind, case, &device),
        Subject::Layer(layer) => layer_case(layer, case, &device),
    }
}

/// A whole model: inference, or one training step with cross-entropy and Adam.
fn model_case(kind: ModelKind, case: &Case, device: &Device) -> Result<Iteration> {
    let (b, t) = (case.batch, case.seq_len);
    let normal =
        |shape: [usize; 3]| Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), device);
    let target = classes(b, 10, device);
    match kind {
        ModelKind::Mlp => {
            let model = MlpConfig::new().init(device)?;
            let x = Tensor::<2>::random([b, 784], Distribution::Normal(0.0, 1.0), device);
            run_model(case.step, model, x, target, |m, x| m.forward(x))
        }
        ModelKind::Cnn => {
            let model = CnnConfig::new().init(device)?;
            let x = Tensor::<4>::random([b, 1, 28, 28], Distribution::Normal(0.0, 1.0), device);
            run_model(case.step, model, x, target, |m, x| m.forward(x))
        }
        ModelKind::Lstm => {
            let model = mnist_rows_lstm().init(device)?;
            run_model(case.step, model, normal([b, t, 28]), target, |m, x| {
                m.forward(x)
            })
        }
        ModelKind::Transformer => {
            let config = TransformerClassifierConfig::new();
            let model = config.init(device)?;
            let tokens = TransformerInput::Tokens(ints([b, t], config.vocab_size, device));
            run_model(case.step, model, tokens, target, |m, x| m.forward(x))
        }
        other => Err(dl_core::Error::invalid(
            "benchmark subject",
            "one of the benchmarked models mlp, cnn, lstm, transformer",
            other.name(),
        )),
    }
}

/// One layer's forward pass (the layer rows are inference only).
fn layer_case(layer: Layer, case: &Case, device: &Device) -> Result<Iteration> {
    let (b, t) = (case.batch, case.seq_len);
    let normal =
        |shape: [usize; 3]| Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), device);
    Ok(match layer {
        Layer::Lstm => {
            let lstm = LstmConfig::new(28, 128)
                .with_batch_first(true)
                .init(device)?;
            let x = normal([b, t, 28]);
            inference(move || lstm.forward(x.clone(), None).0)
        }
        Layer::Attention => {
            let attention = MultiHeadAttentionConfig::new(64, 8).init(device)?;
            let x = normal([b, t, 64]);
            inference(move || {
                attention
                    .forward_self(x.clone(), AttentionMask::none(), false)
                    .0
            })
        }
        Layer::ConvBlock => {
            let block = ConvBlockConfig::new(1, 32, [3, 3])
                .with_padding([1, 1])
                .with_pool_kernel(Some([2, 2]))
                .init(device)?;
            let x = Tensor::<4>::random([b, 1, 28, 28], Distribution::Normal(0.0, 1.0), device);
            inference(move || block.forward(x.clone()))
        }
        Layer::Dense => {
            let dense = DenseConfig::new(784, 512).init(device)?;
            let x = Tensor::<2>::random([b, 784], Distribution::Normal(0.0, 1.0), device);
            inference(move || dense.forward(x.clone()))
        }
    })
}

/// The LSTM classifier on MNIST rows (28 features per step), the chapter's second
/// configuration: input 28, hidden 128, 2 layers, 10 classes, dropout 0.2.
pub fn mnist_rows_lstm() -> LstmClassifierConfig {
    LstmClassifierConfig::new()
        .with_input_size(28)
        .with_hidden_size(128)
        .with_num_classes(10)
}

/// Time `iteration` `warmup` times untimed, then `repetitions` times: durations in ns.
pub fn measure(iteration: &mut Iteration, warmup: usize, repetitions: usize) -> Result<Vec<f64>> {
    for _ in 0..warmup {
        iteration()?;
    }
    let mut samples = Vec::with_capacity(repetitions);
    for _ in 0..repetitions {
        let start = Instant::now();
        let value = iteration()?;
        samples.push(start.elapsed().as_nanos() as f64);
        std::hint::black_box(value);
    }
    Ok(samples)
}

fn classes(n: usize, num_classes: usize, device: &Device) -> Tensor<1, Int> {
    ints([1, n], num_classes, device).reshape([n])
}

fn ints(shape: [usize; 2], bound: usize, device: &Device) -> Tensor<2, Int> {
    let mut rng = SeededRng::new(SEED);
    let values: Vec<i64> = (0..shape[0] * shape[1])
        .map(|_| rng.below(bound as u64) as i64)
        .collect();
    Tensor::<1, Int>::from_ints(values.as_slice(), device).reshape(shape)
}

/// The first value of `output`, read back to the host: only that value, as the PyTorch side's
/// `model(x).flatten()[0].item()` (reading the whole output would time a host copy PyTorch
/// does not make).
fn first_value<const D: usize>(output: Tensor<D>) -> Result<f32> {
    let data = output.flatten::<1>(0, D - 1).narrow(0, 0, 1).into_data();
    let values = data
        .try_to_vec::<f32>()
        .map_err(|e| dl_core::Error::invalid("benchmark output", "f32 values", format!("{e:?}")))?;
    Ok(values.first().copied().unwrap_or(0.0))
}

fn inference<const D: usize>(forward: impl Fn() -> Tensor<D> + 'static) -> Iteration {
    Box::new(move || first_value(forward()))
}

/// A model case: inference (the input already on a plain device) or one training step.
fn run_model<M, I>(
    step: Step,
    model: M,
    input: I,
    target: Tensor<1, Int>,
    forward: fn(&M, I) -> Tensor<2>,
) -> Result<Iteration>
where
    M: Module + 'static,
    I: Clone + 'static,
{
    match step {
        Step::Inference => Ok(inference(move || forward(&model, input.clone()))),
        Step::Training => training(model, input, target, forward),
    }
}

/// One step of the training loop of `dl-models/examples/training_pipeline.rs`: forward,
/// cross-entropy, backward, Adam update, loss read back.
fn training<M, I>(
    model: M,
    input: I,
    target: Tensor<1, Int>,
    forward: fn(&M, I) -> Tensor<2>,
) -> Result<Iteration>
where
    M: Module + 'static,
    I: Clone + 'static,
{
    let mut optimizer = AdamConfig::new().init()?;
    let criterion = CrossEntropyLossConfig::new().init()?;
    let mut model = Some(model);
    Ok(Box::new(move || {
        let current = model.take().ok_or_else(|| {
            dl_core::Error::invalid("benchmark model", "a model", "none after a failed step")
        })?;
        let loss = criterion.try_forward(forward(&current, input.clone()), target.clone())?;
        let grads = GradientsParams::from_grads(loss.backward(), &current);
        model = Some(optimizer.step(LEARNING_RATE, current, grads));
        Ok(loss.into_scalar::<f32>())
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::plan::{Mode, Plan, Step};

    #[test]
    fn every_quick_case_runs_on_every_compiled_cpu_backend() {
        let plan = Plan::new(Mode::Quick, 1);
        for case in &plan.cases {
            for backend in [BackendKind::Flex, BackendKind::NdArray] {
                if !backend.is_compiled() {
                    continue;
                }
                let mut iteration = prepare(case, backend).unwrap();
                let samples = measure(&mut iteration, 0, 2).unwrap();
                assert_eq!(samples.len(), 2);
                assert!(samples.iter().all(|&ns| ns > 0.0), "{samples:?}");
                let value = iteration().unwrap();
                assert!(value.is_finite(), "{} on {backend}: {value}", case.id);
                match case.step {
                    // The cross-entropy of a barely trained classifier on random labels: about
                    // ln(10) = 2.30 (three Adam steps of lr 1e-3 move it by a few tenths).
                    Step::Training => assert!(
                        (f64::from(value) - 10f64.ln()).abs() < 1.0,
                        "{} on {backend}: loss {value}",
                        case.id
                    ),
                    // Inference reads the same first output each time (no dropout, no state).
                    Step::Inference => {
                        assert_eq!(iteration().unwrap(), value, "{} on {backend}", case.id)
                    }
                }
            }
        }
    }
}
