//! The chapter's training pipeline: an MLP (784-512-256-10, ReLU, dropout 0.2) trained with
//! Adam (lr 1e-3) and cross-entropy on mini-batches of 32, shuffled each epoch, printing the
//! loss curve and the final accuracy.
//!
//! As in the chapter, the data is simulated: 1000 samples of N(0, 1) noise with random labels,
//! so the accuracy measures how well the network memorises them.
//!
//! ```sh
//! cargo run -p dl-models --example training_pipeline -- [--backend flex|ndarray] [--epochs 50] [--seed 42]
//! ```

use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Int, Tensor};
use dl_core::{BackendKind, Classifier, SeededRng, seed_device};
use dl_loss::CrossEntropyLossConfig;
use dl_models::{Mlp, MlpConfig};
use dl_optim::AdamConfig;

struct Options {
    backend: BackendKind,
    epochs: usize,
    seed: u64,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        backend: BackendKind::Flex,
        epochs: 50,
        seed: 42,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--backend" => options.backend = value.parse().map_err(|e| format!("{e}"))?,
            "--epochs" => options.epochs = value.parse().map_err(|e| format!("--epochs: {e}"))?,
            "--seed" => options.seed = value.parse().map_err(|e| format!("--seed: {e}"))?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(options)
}

/// The chapter's simulated MNIST: `X ~ N(0, 1)` of shape [1000, 784], labels in 0..10.
fn simulated_data(rng: &mut SeededRng, device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let x = Tensor::<2>::random([1000, 784], Distribution::Normal(0.0, 1.0), device);
    let labels: Vec<i64> = (0..1000).map(|_| rng.below(10) as i64).collect();
    (x, Tensor::<1, Int>::from_ints(labels.as_slice(), device))
}

fn accuracy(model: &Mlp, x: Tensor<2>, labels: Tensor<1, Int>) -> f32 {
    let predicted = model.logits(x).argmax(1).squeeze_dim::<1>(1);
    let correct = predicted
        .equal(labels.clone())
        .int()
        .sum()
        .into_scalar::<i64>();
    correct as f32 / labels.dims()[0] as f32
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = parse_options()?;
    let device = options.backend.autodiff_device()?;
    seed_device(&device, options.seed);
    let mut rng = SeededRng::new(options.seed);

    let (x, labels) = simulated_data(&mut rng, &device);
    let mut model = MlpConfig::new().init(&device)?;
    let mut optimizer = AdamConfig::new().init()?;
    let criterion = CrossEntropyLossConfig::new().init()?;
    let batch_size = 32;
    let n = x.dims()[0];
    println!(
        "MLP with {} parameters on {}, {} epochs of {} batches",
        model.parameter_count(),
        options.backend,
        options.epochs,
        n.div_ceil(batch_size)
    );

    let start = Instant::now();
    let mut curve = Vec::with_capacity(options.epochs);
    for epoch in 0..options.epochs {
        let order = rng.permutation(n);
        let mut epoch_loss = 0.0;
        let mut batches = 0;
        for chunk in order.chunks(batch_size) {
            let index: Vec<i64> = chunk.iter().map(|&i| i as i64).collect();
            let index = Tensor::<1, Int>::from_ints(index.as_slice(), &device);
            let batch_x = x.clone().select(0, index.clone());
            let batch_y = labels.clone().select(0, index);
            let loss = criterion.try_forward(model.forward(batch_x), batch_y)?;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(1e-3, model, grads);
            epoch_loss += loss.into_scalar::<f32>();
            batches += 1;
        }
        let average = epoch_loss / batches as f32;
        curve.push(average);
        if epoch % 10 == 0 || epoch + 1 == options.epochs {
            println!("Epoch {epoch}: Loss = {average:.4}");
        }
    }
    let model = model.valid();
    let acc = accuracy(&model, x.without_autodiff(), labels.without_autodiff());
    println!("Accuracy = {acc:.4} after {:.1?}", start.elapsed());
    println!("Loss curve: {}", sparkline(&curve));
    Ok(())
}

/// The loss curve as one line of block characters, highest loss tallest.
fn sparkline(values: &[f32]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let (lo, hi) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let span = (hi - lo).max(f32::EPSILON);
    values
        .iter()
        .map(|&v| BARS[(((v - lo) / span) * 7.0).round() as usize])
        .collect()
}
