//! Checkpoints written by `dl_io::save_checkpoint` with configurations `dl train` never uses
//! (other input sizes, class counts, image sizes, channels, sequence shapes, absurd sizes in
//! the metadata, wrong JSON types) through every `dl` command that reads a checkpoint: each
//! exits 0, or 1 with a message that names the file, the mismatch and what was expected —
//! never a panic (101) or an abort (134).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;
use dl_core::BackendKind;
use dl_io::{CheckpointMeta, StateDict};
use dl_models::{
    CnnConfig, LstmClassifierConfig, MlpConfig, ScratchMlpConfig, ScratchOutput,
    TransformerClassifierConfig,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Save a model of `kind` built from `weights_config` under metadata that claims
/// `meta_config`: the two are equal for a consistent checkpoint. Returns the saved model's
/// PyTorch state dict; `None` when `weights_config` does not build (or would be larger than
/// a test needs).
fn save(kind: &str, weights_config: &Value, meta_config: &Value, path: &Path) -> Option<StateDict> {
    save_claiming(kind, weights_config, kind, meta_config, path)
}

/// [`save`] with metadata that may also claim another model (`meta_kind`).
fn save_claiming(
    kind: &str,
    weights_config: &Value,
    meta_kind: &str,
    meta_config: &Value,
    path: &Path,
) -> Option<StateDict> {
    let device = BackendKind::Flex.device().unwrap();
    let meta = CheckpointMeta {
        model: meta_kind.to_string(),
        model_config: meta_config.clone(),
        ..Default::default()
    };
    const MAX_PARAMS: usize = 400_000;
    macro_rules! save_as {
        ($config:ty) => {{
            let config: $config = serde_json::from_value(weights_config.clone()).ok()?;
            if config.num_params().ok()? > MAX_PARAMS {
                return None;
            }
            let model = config.init(&device).ok()?;
            dl_io::save_checkpoint(path, &model, None, &meta).unwrap();
            dl_io::to_pytorch_state_dict(&model)
        }};
    }
    Some(match kind {
        "mlp" => save_as!(MlpConfig),
        "cnn" | "image-cnn" => save_as!(CnnConfig),
        "lstm" => save_as!(LstmClassifierConfig),
        "transformer" => {
            let config: TransformerClassifierConfig =
                serde_json::from_value(weights_config.clone()).ok()?;
            let table = config.max_seq_length.checked_mul(config.d_model)?;
            if config.num_params().ok()? > MAX_PARAMS || table > MAX_PARAMS {
                return None;
            }
            let model = config.init(&device).ok()?;
            dl_io::save_checkpoint(path, &model, None, &meta).unwrap();
            dl_io::to_pytorch_state_dict(&model)
        }
        "scratch" => save_as!(ScratchMlpConfig),
        _ => return None,
    })
}

/// Small configurations of every model that fit the digits.
fn small_config(kind: &str) -> Value {
    let value = match kind {
        "mlp" => serde_json::to_value(MlpConfig::new().with_hidden_sizes(vec![8])),
        "cnn" => serde_json::to_value(
            CnnConfig::new()
                .with_conv_channels([2, 2, 2])
                .with_hidden_size(4),
        ),
        "image-cnn" => serde_json::to_value(
            CnnConfig::image_cnn()
                .with_conv_channels([2, 2, 2])
                .with_hidden_size(4),
        ),
        "lstm" => serde_json::to_value(
            LstmClassifierConfig::new()
                .with_input_size(28)
                .with_hidden_size(4)
                .with_num_classes(10),
        ),
        "transformer" => serde_json::to_value(
            TransformerClassifierConfig::new()
                .with_d_model(8)
                .with_n_heads(2)
                .with_n_layers(1)
                .with_d_ff(8)
                .with_max_seq_length(16)
                .with_patch_size(Some(49)),
        ),
        "scratch" => serde_json::to_value(
            ScratchMlpConfig::new(vec![784, 8, 10])
                .with_output(ScratchOutput::Softmax)
                .with_init_scale(0.0),
        ),
        other => panic!("no such model {other}"),
    };
    value.unwrap()
}

/// `config` with `key` set to `value`.
fn with(mut config: Value, key: &str, value: Value) -> Value {
    config[key] = value;
    config
}

/// Every command that reads a checkpoint, on `checkpoint`, writing into `dir`.
fn commands(checkpoint: &str, dir: &Path) -> Vec<Vec<String>> {
    let out = |name: &str| path(dir, name);
    [
        vec!["eval", checkpoint, "--limit", "8"],
        vec!["predict", checkpoint, "--index", "0"],
        vec!["attention", checkpoint, "--out", &out("attention.png")],
        vec!["convert", checkpoint, &out("converted.safetensors")],
        vec!["info", checkpoint],
    ]
    .into_iter()
    .map(|args| args.into_iter().map(String::from).collect())
    .collect()
}

/// Run `args`; the exit status must be 0, or 1 with an `error:` line naming `file`. Returns
/// the exit status and stderr.
fn survives(args: &[String], file: &str) -> (i32, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = dl(&args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let code = output.status.code();
    assert!(
        matches!(code, Some(0 | 1)),
        "dl {args:?} crashed:\n{}",
        text(&output)
    );
    assert!(
        !stderr.contains("panicked"),
        "dl {args:?}:\n{}",
        text(&output)
    );
    if code == Some(1) {
        assert!(
            stderr.starts_with("error: ") && stderr.contains(file),
            "dl {args:?}: the error does not name {file}:\n{}",
            text(&output)
        );
    }
    (code.unwrap_or(-1), stderr)
}

/// A checkpoint whose configuration and weights agree with each other but not with the
/// digits: every command but `info` refuses it with `expected`; `info` shows it.
fn refused(kind: &str, config: Value, expected: &[&str]) {
    let dir = tempdir();
    let file = path(dir.path(), &format!("{kind}.safetensors"));
    save(kind, &config, &config, Path::new(&file)).unwrap();
    for args in commands(&file, dir.path()) {
        let (code, stderr) = survives(&args, &file);
        if args[0] == "info" {
            assert_eq!(code, 0, "{args:?}: {stderr}");
        } else {
            assert_eq!(code, 1, "{args:?} accepted {config}");
            for needle in expected {
                assert!(
                    stderr.contains(needle),
                    "{args:?}: `{needle}` not in {stderr}"
                );
            }
        }
    }
}

#[test]
fn consistent_checkpoints_for_other_data_are_refused_with_the_mismatch() {
    let mlp = small_config("mlp");
    refused(
        "mlp",
        with(mlp.clone(), "input_size", json!(1000)),
        &["input_size is 1000, expected 784"],
    );
    refused(
        "mlp",
        with(mlp, "num_classes", json!(7)),
        &["num_classes is 7, expected 10"],
    );
    let cnn = small_config("cnn");
    refused(
        "cnn",
        with(cnn.clone(), "in_channels", json!(3)),
        &["in_channels is 3, expected 1"],
    );
    refused(
        "cnn",
        with(cnn, "image_size", json!(40)),
        &["image_size is 40, expected 28"],
    );
    refused(
        "image-cnn",
        with(small_config("image-cnn"), "image_size", json!(28)),
        &["image_size is 28, expected 64"],
    );
    refused(
        "lstm",
        with(small_config("lstm"), "input_size", json!(10)),
        &["input_size is 10, expected 28"],
    );
    let transformer = small_config("transformer");
    refused(
        "transformer",
        with(
            with(transformer.clone(), "patch_size", json!(16)),
            "max_seq_length",
            json!(49),
        ),
        &["patch_size is 16, expected 49"],
    );
    refused(
        "transformer",
        with(transformer, "max_seq_length", json!(8)),
        &["max_seq_length is 8, expected at least 16"],
    );
    refused(
        "scratch",
        with(small_config("scratch"), "layer_sizes", json!([784, 8, 7])),
        &["last layer size is 7, expected 10"],
    );
}

#[test]
fn metadata_that_claims_more_than_the_weights_hold_is_refused_before_allocating() {
    let dir = tempdir();
    let file = path(dir.path(), "absurd.safetensors");
    let small = small_config("mlp");
    // 784 x 2^40 floats would be 3.4 PB.
    let absurd = with(small.clone(), "hidden_sizes", json!([1u64 << 40]));
    save("mlp", &small, &absurd, Path::new(&file)).unwrap();
    let (code, stderr) = survives(&["eval".into(), file.clone()], &file);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("parameters but the file's weights hold 6370"),
        "{stderr}"
    );
    // An overflowing count and a positional table beyond the weights.
    let overflow = with(small.clone(), "hidden_sizes", json!([u64::MAX, u64::MAX]));
    save("mlp", &small, &overflow, Path::new(&file)).unwrap();
    let (code, stderr) = survives(
        &["predict".into(), file.clone(), "--index".into(), "1".into()],
        &file,
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("overflowing"), "{stderr}");
    let transformer = small_config("transformer");
    let long = with(transformer.clone(), "max_seq_length", json!(1u64 << 50));
    save("transformer", &transformer, &long, Path::new(&file)).unwrap();
    let (code, stderr) = survives(&["attention".into(), file.clone()], &file);
    assert_eq!(code, 1);
    assert!(stderr.contains("positional table"), "{stderr}");
}

#[test]
fn wrong_json_types_are_refused_naming_the_model() {
    let dir = tempdir();
    let file = path(dir.path(), "types.safetensors");
    let small = small_config("cnn");
    for bad in [
        with(small.clone(), "image_size", json!("28")),
        with(small.clone(), "conv_channels", json!([2, 2])),
        with(small.clone(), "dropout", json!(null)),
        json!([1, 2, 3]),
    ] {
        save("cnn", &small, &bad, Path::new(&file)).unwrap();
        for args in commands(&file, dir.path()) {
            let (code, stderr) = survives(&args, &file);
            if args[0] != "info" {
                assert_eq!(code, 1, "{args:?} accepted {bad}");
                assert!(
                    stderr.contains("`cnn` model configuration is not valid"),
                    "{stderr}"
                );
            }
        }
    }
}

#[test]
fn small_checkpoints_that_fit_the_digits_run_everywhere() {
    let dir = tempdir();
    for kind in ["mlp", "cnn", "image-cnn", "lstm", "transformer", "scratch"] {
        let file = path(dir.path(), &format!("{kind}.safetensors"));
        let config = small_config(kind);
        let weights = save(kind, &config, &config, Path::new(&file)).unwrap();
        for args in commands(&file, dir.path()) {
            let (code, stderr) = survives(&args, &file);
            // Only the transformer has attention maps.
            let expected = if args[0] == "attention" && kind != "transformer" {
                1
            } else {
                0
            };
            assert_eq!(code, expected, "{kind} {args:?}: {stderr}");
        }
        outputs_follow_the_checkpoint(kind, &file, &weights, dir.path());
    }
}

/// What the commands of [`commands`] print and write for the checkpoint `file` of `kind`
/// holding `weights`: each checked against another path through the same model.
fn outputs_follow_the_checkpoint(kind: &str, file: &str, weights: &StateDict, dir: &Path) {
    // `convert` wrote exactly the saved model's tensors under PyTorch's names.
    let converted = StateDict::from_file(dir.join("converted.safetensors")).unwrap();
    assert_eq!(
        converted.keys().collect::<Vec<_>>(),
        weights.keys().collect::<Vec<_>>(),
        "{kind}"
    );
    for key in weights.keys() {
        assert_eq!(converted.get(key), weights.get(key), "{kind} `{key}`");
    }
    // `info` names the model and counts those tensors' elements.
    let info: Value = serde_json::from_str(&ok(&["info", file, "--json"])).unwrap();
    assert_eq!(info["model"], kind);
    let elements: usize = weights
        .keys()
        .map(|k| weights.get(k).unwrap().num_elements())
        .sum();
    assert_eq!(info["parameters"], elements as u64, "{kind}");
    // `predict` gives a distribution over the 10 digits whose largest entry is the class,
    // and `eval` counts those classes against the labels.
    let indices: Vec<String> = (0..8).map(|i| i.to_string()).collect();
    let predicted: Value = serde_json::from_str(&ok(&[
        "predict",
        file,
        "--index",
        &indices.join(","),
        "--json",
    ]))
    .unwrap();
    let mut confusion = vec![vec![0u64; 10]; 10];
    // Rows whose two largest probabilities are this close may rank the other way in `eval`'s
    // batch (another summation order of the same products): small random weights give
    // near-uniform outputs.
    let mut near_ties = 0u64;
    for row in predicted.as_array().unwrap() {
        let p: Vec<f64> = row["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .collect();
        assert_eq!(p.len(), 10, "{kind}");
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{kind}: {p:?}");
        let class = row["class"].as_u64().unwrap() as usize;
        assert!(p.iter().all(|&q| q <= p[class]), "{kind}: {class} {p:?}");
        let runner_up = (0..10)
            .filter(|&i| i != class)
            .map(|i| p[i])
            .fold(0.0, f64::max);
        if p[class] - runner_up < 1e-5 {
            near_ties += 1;
        }
        confusion[row["label"].as_u64().unwrap() as usize][class] += 1;
    }
    let eval: Value = serde_json::from_str(&ok(&["eval", file, "--limit", "8", "--json"])).unwrap();
    assert_eq!(eval["count"], 8, "{kind}");
    let right: u64 = (0..10).map(|i| confusion[i][i]).sum();
    if near_ties == 0 {
        assert_eq!(eval["confusion"], json!(confusion), "{kind}");
        assert_eq!(
            eval["accuracy"].as_f64(),
            Some(right as f64 / 8.0),
            "{kind}"
        );
    } else {
        // The labels are the same digits; at most the near-tied rows moved column.
        let theirs: Vec<Vec<u64>> = serde_json::from_value(eval["confusion"].clone()).unwrap();
        for (label, (ours, theirs)) in confusion.iter().zip(&theirs).enumerate() {
            let (a, b): (u64, u64) = (ours.iter().sum(), theirs.iter().sum());
            assert_eq!(a, b, "{kind}: label {label}");
        }
        let accuracy = eval["accuracy"].as_f64().unwrap();
        assert!(
            (accuracy * 8.0 - right as f64).abs() <= near_ties as f64,
            "{kind}: eval {accuracy}, predict {right}/8 with {near_ties} near ties"
        );
    }
    if kind == "transformer" {
        // One layer of two heads over the 16 patches, each query's weights a distribution.
        let attention: Value = serde_json::from_str(&ok(&[
            "attention",
            file,
            "--out",
            &path(dir, "attention.png"),
            "--json",
        ]))
        .unwrap();
        assert_eq!(attention["tokens"], 16);
        let layers = attention["weights"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        let heads = layers[0].as_array().unwrap();
        assert_eq!(heads.len(), 2);
        for map in heads {
            let map: Vec<f64> = map
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(map.len(), 256);
            for row in map.chunks(16) {
                assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{row:?}");
            }
        }
    }
}

/// A change to a checkpoint's metadata: one configuration value replaced, or the model name.
#[derive(Debug, Clone)]
enum MetaMutation {
    /// Set the `index`-th key of the configuration (in sorted order) to a size; in an array,
    /// set one of its elements.
    Size(prop::sample::Index, prop::sample::Index, u64),
    /// Set the `index`-th key to a value of any type.
    Value(prop::sample::Index, Value),
    /// Remove the `index`-th key.
    Remove(prop::sample::Index),
    /// Claim another model.
    Model(&'static str),
}

const KINDS: [&str; 6] = ["mlp", "cnn", "image-cnn", "lstm", "transformer", "scratch"];

/// Sizes around the digits' own (1, 3, 7, 10, 16, 28, 49, 64, 784) and absurd ones.
fn size() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => prop_oneof![0u64..5, 6u64..12, 15u64..17, 27u64..30, 48u64..50, 63u64..65, 783u64..786],
        2 => prop_oneof![Just(1u64 << 31), Just(1u64 << 40), Just(u64::MAX), any::<u64>()],
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(|v| Value::from(-(v.unsigned_abs() as i64).max(1))),
        prop_oneof![Just(0.5), Just(1.0), Just(-0.1), Just(1e300)].prop_map(Value::from),
        prop_oneof![
            Just(Value::Null),
            Just(json!(true)),
            Just(json!("784")),
            Just(json!({})),
            Just(json!([8, 8])),
            Just(json!([784, 8, 10])),
            Just(json!([1, 1, 1])),
            Just(json!([u64::MAX, 2])),
        ],
    ]
}

fn meta_mutation() -> impl Strategy<Value = MetaMutation> {
    use prop::sample::Index;
    prop_oneof![
        8 => (any::<Index>(), any::<Index>(), size()).prop_map(|(k, e, v)| MetaMutation::Size(k, e, v)),
        2 => (any::<Index>(), json_value()).prop_map(|(i, v)| MetaMutation::Value(i, v)),
        1 => any::<Index>().prop_map(MetaMutation::Remove),
        1 => prop::sample::select(&KINDS[..]).prop_map(MetaMutation::Model),
    ]
}

fn mutate(kind: &'static str, config: &Value, mutation: &MetaMutation) -> (&'static str, Value) {
    let mut config = config.clone();
    let keys: Vec<String> = config
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    if keys.is_empty() {
        return (kind, config);
    }
    match mutation {
        MetaMutation::Size(key, element, value) => {
            let field = &mut config[&keys[key.index(keys.len())]];
            match field.as_array_mut() {
                Some(items) if !items.is_empty() => {
                    let i = element.index(items.len());
                    items[i] = Value::from(*value);
                }
                _ => *field = Value::from(*value),
            }
            (kind, config)
        }
        MetaMutation::Value(i, value) => {
            config[&keys[i.index(keys.len())]] = value.clone();
            (kind, config)
        }
        MetaMutation::Remove(i) => {
            if let Some(object) = config.as_object_mut() {
                object.remove(&keys[i.index(keys.len())]);
            }
            (kind, config)
        }
        MetaMutation::Model(other) => (other, config),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(256)
    })]

    /// Mutated metadata, with weights that agree with it when it builds (`consistent`) or the
    /// original weights otherwise, through a random command: exit 0 or a clear error.
    #[test]
    fn mutated_metadata_never_crashes_dl(
        kind in prop::sample::select(&KINDS[..]),
        mutations in prop::collection::vec(meta_mutation(), 1..3),
        consistent in any::<bool>(),
        command in 0usize..5,
    ) {
        let dir = tempdir();
        let file = path(dir.path(), "mutated.safetensors");
        let original = small_config(kind);
        let (mut claimed_kind, mut claimed) = (kind, original.clone());
        for mutation in &mutations {
            (claimed_kind, claimed) = mutate(claimed_kind, &claimed, mutation);
        }
        let written = consistent
            && save(claimed_kind, &claimed, &claimed, Path::new(&file)).is_some();
        if !written {
            // The original weights under the mutated metadata.
            save_claiming(kind, &original, claimed_kind, &claimed, Path::new(&file)).unwrap();
        }
        let args = &commands(&file, dir.path())[command];
        survives(args, &file);
    }
}
