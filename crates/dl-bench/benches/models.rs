//! `cargo bench -p dl-bench`: every case of the full plan on every compiled CPU backend,
//! under divan (adaptive sample counts, per-case statistics in the terminal).
//!
//! The published numbers come from `cargo xtask bench`, whose fixed warm-up and repetition
//! counts are the PyTorch script's; this target is for quick looks while optimising, e.g.
//! `cargo bench -p dl-bench -- lstm` or `DL_BENCH_QUICK=1 cargo bench -p dl-bench`.

use dl_bench::{Case, Mode, Plan, prepare};
use dl_core::BackendKind;

fn main() {
    divan::main();
}

fn plan() -> Plan {
    let mode = if std::env::var_os("DL_BENCH_QUICK").is_some() {
        Mode::Quick
    } else {
        Mode::Full
    };
    Plan::new(mode, 0)
}

/// Case ids of the full plan, as divan arguments (the quick plan has the same subjects).
const CASES: &[&str] = &[
    "mlp/infer/b1",
    "mlp/infer/b64",
    "mlp/train/b64",
    "cnn/infer/b1",
    "cnn/infer/b64",
    "cnn/train/b64",
    "lstm/infer/b1",
    "lstm/infer/b64",
    "lstm/train/b64",
    "transformer/infer/b1",
    "transformer/infer/b64",
    "transformer/train/b64",
    "lstm_layer/infer/b64",
    "attention/infer/b64",
    "conv_block/infer/b64",
    "dense/infer/b64",
];

/// The plan's case with this id, or in quick mode the one of the same subject and step.
fn case(id: &str) -> Case {
    let full = Plan::new(Mode::Full, 0);
    let wanted = full.cases.iter().find(|c| c.id == id);
    let wanted = wanted.unwrap_or_else(|| panic!("no case {id}"));
    plan()
        .cases
        .into_iter()
        .find(|c| {
            c.subject == wanted.subject
                && c.step == wanted.step
                && (c.batch == 1) == (wanted.batch == 1)
        })
        .unwrap_or_else(|| panic!("no quick case for {id}"))
}

fn bench_on(bencher: divan::Bencher<'_, '_>, id: &str, backend: BackendKind) {
    let mut iteration = prepare(&case(id), backend).unwrap_or_else(|e| panic!("{id}: {e}"));
    bencher.bench_local(|| iteration().unwrap_or_else(|e| panic!("{id}: {e}")));
}

#[cfg(feature = "flex")]
#[divan::bench(args = CASES, sample_count = 20)]
fn flex(bencher: divan::Bencher<'_, '_>, id: &str) {
    bench_on(bencher, id, BackendKind::Flex);
}

#[cfg(feature = "ndarray")]
#[divan::bench(args = CASES, sample_count = 20)]
fn ndarray(bencher: divan::Bencher<'_, '_>, id: &str) {
    bench_on(bencher, id, BackendKind::NdArray);
}

#[cfg(feature = "tch")]
#[divan::bench(args = CASES, sample_count = 20)]
fn tch(bencher: divan::Bencher<'_, '_>, id: &str) {
    bench_on(bencher, id, BackendKind::Tch);
}
