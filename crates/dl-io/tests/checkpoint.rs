//! Checkpoints resume training exactly: N steps, save, load, M steps equals N + M steps.

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor};
use dl_core::{BackendKind, Classifier, SeededRng, seed_device};
use dl_io::{
    CheckpointMeta, Error, PytorchModel, load_checkpoint, read_checkpoint_meta, save_checkpoint,
    to_pytorch_state_dict,
};
use dl_models::{LstmClassifierConfig, MlpConfig};
use dl_optim::{AdamConfig, RmsPropConfig, SgdConfig};

fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    log_softmax(logits, 1)
        .gather(1, targets.unsqueeze_dim(1))
        .mean()
        .neg()
}

/// One training step on batch `step` of a fixed pseudo-random stream.
fn train<M>(
    mut model: M,
    optimizer: &mut ModuleOptimizer,
    steps: std::ops::Range<u64>,
    data: &dyn Fn(u64) -> (M::Input, Tensor<1, Int>),
) -> M
where
    M: Classifier + PytorchModel,
{
    for step in steps {
        let (x, y) = data(step);
        let loss = cross_entropy(model.logits(x), y);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(1e-2, model, grads);
    }
    model
}

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dl-io-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn resume_is_exact<M>(
    backend: BackendKind,
    what: &str,
    build: &dyn Fn(&Device) -> M,
    new_optimizer: &dyn Fn() -> ModuleOptimizer,
    data: &dyn Fn(u64) -> (M::Input, Tensor<1, Int>),
) where
    M: Classifier + PytorchModel,
{
    let device = backend.autodiff_device().expect("backend");
    seed_device(&device, 5);
    let initial = build(&device);
    // Burn initialises parameters lazily; a clone taken before the first read would draw its
    // own random values. Reading every parameter once fixes them for both copies.
    let start = to_pytorch_state_dict(&initial);

    // N + M steps without stopping.
    let mut optimizer = new_optimizer();
    let straight = train(initial.clone(), &mut optimizer, 0..7, data);

    // N steps, save, restore into fresh objects, M steps.
    let mut optimizer = new_optimizer();
    let first = train(initial, &mut optimizer, 0..4, data);
    let dir = scratch_dir(what);
    let path = dir.join("checkpoint.safetensors");
    let mut rng = SeededRng::new(9);
    rng.next_u64();
    let meta = CheckpointMeta {
        model: what.into(),
        model_config: serde_json::json!({"note": "test"}),
        training_config: serde_json::json!({"lr": 1e-2}),
        step: 4,
        epoch: 1,
        rng_state: rng.state(),
    };
    save_checkpoint(&path, &first, Some(&optimizer), &meta).expect("save");
    drop((first, optimizer));

    seed_device(&device, 99); // a different initialisation, overwritten by the checkpoint
    let restored = load_checkpoint(&path, build(&device), Some(new_optimizer())).expect("load");
    assert_eq!(restored.meta, meta);
    assert_eq!(read_checkpoint_meta(&path).expect("meta"), meta);
    let mut optimizer = restored.optimizer.expect("optimizer state");
    let resumed = train(restored.model, &mut optimizer, 4..7, data);

    let a = to_pytorch_state_dict(&straight);
    let b = to_pytorch_state_dict(&resumed);
    for key in a.keys() {
        let report = dl_core::compare(
            a.get(key).expect("key"),
            b.get(key).expect("key"),
            dl_core::Tolerance::EXACT,
        );
        assert!(
            report.passed(),
            "{what} on {backend}: `{key}` differs after resuming: {report}"
        );
    }
    // The steps move the weights, and resuming with a fresh optimizer instead of the saved
    // state takes another path: the equality above really exercises the restored state.
    let differs =
        |x: &dl_io::StateDict, y: &dl_io::StateDict| x.keys().any(|k| x.get(k) != y.get(k));
    assert!(
        differs(&a, &start),
        "{what}: training did not change the weights"
    );
    let again = load_checkpoint(&path, build(&device), None).expect("load weights only");
    let lost = train(again.model, &mut new_optimizer(), 4..7, data);
    assert!(
        differs(&a, &to_pytorch_state_dict(&lost)),
        "{what} on {backend}: a fresh optimizer gives the same weights as the restored one"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir).expect("dir").collect();
    assert_eq!(leftovers.len(), 1, "only the checkpoint itself remains");
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[test]
fn mlp_with_adam_and_sgd_resumes_bit_identically() {
    for backend in [BackendKind::Flex, BackendKind::NdArray] {
        let data = |step: u64| {
            let device = backend.autodiff_device().expect("backend");
            let mut rng = SeededRng::new(step);
            let x: Vec<f32> = (0..6 * 12).map(|_| rng.next_f64() as f32 - 0.5).collect();
            let y: Vec<i64> = (0..6).map(|_| rng.below(3) as i64).collect();
            (
                Tensor::<1>::from_floats(x.as_slice(), &device).reshape([6, 12]),
                Tensor::<1, Int>::from_ints(y.as_slice(), &device),
            )
        };
        let build = |d: &Device| {
            MlpConfig::new()
                .with_input_size(12)
                .with_hidden_sizes(vec![10])
                .with_num_classes(3)
                .with_dropout(0.0)
                .init(d)
                .expect("mlp")
        };
        resume_is_exact(
            backend,
            "mlp-adam",
            &build,
            &|| AdamConfig::new().with_amsgrad(true).init().expect("adam"),
            &data,
        );
        resume_is_exact(
            backend,
            "mlp-sgd",
            &build,
            &|| {
                SgdConfig::new()
                    .with_momentum(0.9)
                    .with_nesterov(true)
                    .init()
                    .expect("sgd")
            },
            &data,
        );
    }
}

#[test]
fn lstm_with_rmsprop_resumes_bit_identically() {
    let backend = BackendKind::Flex;
    // Data from our own generator: the backend's is process-wide and other tests seed it.
    let data = |step: u64| {
        let device = backend.autodiff_device().expect("backend");
        let mut rng = SeededRng::new(1000 + step);
        let x: Vec<f32> = (0..4 * 5 * 3)
            .map(|_| rng.next_f64() as f32 * 2.0 - 1.0)
            .collect();
        (
            Tensor::<1>::from_floats(x.as_slice(), &device).reshape([4, 5, 3]),
            Tensor::<1, Int>::from_ints([0, 1, 1, 0], &device),
        )
    };
    let build = |d: &Device| {
        LstmClassifierConfig::new()
            .with_input_size(3)
            .with_hidden_size(6)
            .with_num_classes(2)
            .with_dropout(0.0)
            .init(d)
            .expect("lstm")
    };
    resume_is_exact(
        backend,
        "lstm-rmsprop",
        &build,
        &|| {
            RmsPropConfig::new()
                .with_momentum(0.5)
                .with_centered(true)
                .init()
                .expect("rmsprop")
        },
        &data,
    );
}

#[test]
fn a_failed_save_leaves_the_previous_checkpoint_intact() {
    let device = BackendKind::Flex.device().expect("flex");
    let model = MlpConfig::new()
        .with_hidden_sizes(vec![4])
        .init(&device)
        .expect("mlp");
    let dir = scratch_dir("failed-save");
    let path = dir.join("last.safetensors");
    let meta = CheckpointMeta {
        step: 1,
        ..Default::default()
    };
    save_checkpoint(&path, &model, None, &meta).expect("first save");
    let before = std::fs::read(&path).expect("read");

    // Saving into a folder that does not exist fails and writes nothing anywhere.
    let missing = dir.join("no-such-folder").join("next.safetensors");
    let err = save_checkpoint(&missing, &model, None, &meta).unwrap_err();
    assert!(err.to_string().contains("no-such-folder"), "{err}");
    assert_eq!(std::fs::read(&path).expect("read"), before);
    assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 1);

    // A plain state dict is not a checkpoint.
    let plain = dir.join("plain.safetensors");
    to_pytorch_state_dict(&model)
        .write_safetensors(&plain)
        .expect("write");
    let err = read_checkpoint_meta(&plain).unwrap_err();
    assert!(matches!(err, Error::Checkpoint { .. }), "{err}");
    assert!(err.to_string().contains("not a dl-rs checkpoint"), "{err}");

    // Loading an optimizer from a checkpoint that has none is refused.
    let fresh = MlpConfig::new()
        .with_hidden_sizes(vec![4])
        .init(&device)
        .expect("mlp");
    let err = load_checkpoint(&path, fresh, Some(AdamConfig::new().init().expect("adam")))
        .err()
        .expect("no optimizer state");
    assert!(err.to_string().contains("no optimizer state"), "{err}");
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[test]
fn module_to_device_keeps_the_checkpoint_usable() {
    // Weights saved from one backend load on another.
    let flex = BackendKind::Flex.device().expect("flex");
    let ndarray = BackendKind::NdArray.device().expect("ndarray");
    let model = MlpConfig::new()
        .with_hidden_sizes(vec![4])
        .init(&flex)
        .expect("mlp");
    let dir = scratch_dir("cross-backend");
    let path = dir.join("w.safetensors");
    save_checkpoint(&path, &model, None, &CheckpointMeta::default()).expect("save");
    let other = MlpConfig::new()
        .with_hidden_sizes(vec![4])
        .init(&ndarray)
        .expect("mlp");
    let restored = load_checkpoint(&path, other, None).expect("load");
    assert_eq!(restored.model.devices(), vec![ndarray]);
    assert_eq!(
        to_pytorch_state_dict(&restored.model).get("0.weight"),
        to_pytorch_state_dict(&model).get("0.weight")
    );
    std::fs::remove_dir_all(dir).expect("cleanup");
}
