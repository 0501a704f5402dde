//! The transformer block's two residual dropouts have PyTorch's semantics
//! (`nn.TransformerEncoderLayer`'s `dropout1` after self-attention and `dropout2` after the
//! feed-forward network): in training each element of the sublayer's output is zeroed with
//! probability `p` before it is added to the residual stream, and the survivors are scaled
//! by `1 / (1 - p)`; the residual stream itself is never dropped; in evaluation nothing is.
//!
//! The block has one `dropout` probability, as PyTorch's layer has. Each test isolates one
//! residual dropout by construction, with the same `p = 0.5` everywhere:
//!
//! - The sublayer under test gets a zero output weight and a known bias `c`, so its output
//!   is `c` at every position whatever its internal dropout does; the other sublayer gets a
//!   zero output weight and bias, so it adds exactly 0 (and dropout of 0 is 0).
//! - `c` is 0 in two *anchor* features, which the dropout therefore cannot touch. Each
//!   LayerNorm is, per row, an affine map `v ↦ (v - μ) / σ` with `σ > 0` (weight 1, bias 0),
//!   and so are two in a row. Knowing the anchors of the residual stream `r` before the
//!   branch is added, the test solves each output row for `σ` and `μ`, maps the row back to
//!   `v = r + dropout(c)`, and reads off the dropped branch `v - r` element by element.
//!
//! The recovered branch must equal `c` in evaluation, and in training be, element by element,
//! either 0 or `c / (1 - p)`, with the zeroed fraction `p` within six standard deviations of
//! a Bernoulli count. Post-norm (the chapter's block) and pre-norm are both checked.
#![allow(clippy::unwrap_used)]

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use dl_core::BackendKind;
use dl_layers::{TransformerBlock, TransformerBlockConfig, set_training};

const P: f64 = 0.5;
const D: usize = 16;
const BATCH: usize = 32;
const TIME: usize = 8;
/// Features of the residual stream that no branch writes to.
const ANCHORS: [usize; 2] = [0, 1];

/// Which residual branch a test drops.
#[derive(Clone, Copy, Debug)]
enum Branch {
    Attention,
    FeedForward,
}

/// The branch's constant output: 0 at the anchors, elsewhere alternating in sign with
/// magnitude at least 0.5, so a kept element (`≥ 1` after scaling) is far from a dropped one.
fn branch_output() -> Vec<f32> {
    (0..D)
        .map(|j| {
            if ANCHORS.contains(&j) {
                0.0
            } else {
                let m = 0.5 + 0.125 * j as f32;
                if j % 2 == 0 { m } else { -m }
            }
        })
        .collect()
}

/// `linear` outputs `bias` for every input.
fn constant(linear: &mut Linear, bias: &[f32], device: &Device) {
    let [d_in, d_out] = linear.weight.val().dims();
    assert_eq!(d_out, bias.len());
    linear.weight = Param::from_tensor(Tensor::zeros([d_in, d_out], device));
    linear.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(bias.to_vec(), [d_out]),
        device,
    )));
}

/// A block whose `branch` outputs [`branch_output`] and whose other sublayer outputs 0.
fn block_dropping(branch: Branch, norm_first: bool, device: &Device) -> TransformerBlock {
    let mut block = TransformerBlockConfig::new(D, 4, 2 * D)
        .with_dropout(P)
        .with_norm_first(norm_first)
        .init(device)
        .unwrap();
    let (c, zero) = (branch_output(), vec![0.0; D]);
    let (attention, feed_forward) = match branch {
        Branch::Attention => (&c, &zero),
        Branch::FeedForward => (&zero, &c),
    };
    constant(&mut block.attention.out_proj, attention, device);
    constant(&mut block.feed_forward.linear2, feed_forward, device);
    block
}

/// `[BATCH, TIME, D]` standard normal with anchor features fixed at -2 and 2.
fn input(device: &Device) -> Tensor<3> {
    let x = Tensor::<3>::random([BATCH, TIME, D], Distribution::Normal(0.0, 1.0), device);
    let mut v = values(x);
    for row in v.chunks_mut(D) {
        row[ANCHORS[0]] = -2.0;
        row[ANCHORS[1]] = 2.0;
    }
    Tensor::from_data(TensorData::new(v, [BATCH, TIME, D]), device)
}

fn values<const N: usize>(t: Tensor<N>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// The residual stream `r` that `branch` is added to: `x` itself, except for the
/// feed-forward branch of the post-norm block, which is added to `norm1(x + 0)`.
fn residual(block: &TransformerBlock, branch: Branch, x: &Tensor<3>) -> Vec<f32> {
    match (branch, block.norm_first) {
        (Branch::FeedForward, false) => values(block.norm1.forward(x.clone())),
        _ => values(x.clone()),
    }
}

/// Solves each row of `y` for the per-row affine map from `v = r + branch` (see the top of
/// the file) using the anchors of `r`, and returns `v - r`, the branch as it was added.
fn recover_branch(y: &[f32], r: &[f32]) -> Vec<f64> {
    let mut out = Vec::with_capacity(y.len());
    for (y, r) in y.chunks(D).zip(r.chunks(D)) {
        let [a, b] = ANCHORS;
        let (ya, yb) = (f64::from(y[a]), f64::from(y[b]));
        let (ra, rb) = (f64::from(r[a]), f64::from(r[b]));
        assert!((yb - ya).abs() > 0.1, "anchors collapsed: {ya} {yb}");
        let sigma = (rb - ra) / (yb - ya);
        assert!(sigma > 0.0, "the norms reversed the anchors: σ = {sigma}");
        let mu = ra - sigma * ya;
        out.extend(
            y.iter()
                .zip(r)
                .map(|(&y, &r)| sigma * f64::from(y) + mu - f64::from(r)),
        );
    }
    out
}

/// Runs `block` (already in training or evaluation mode) and returns the recovered branch.
fn dropped_branch(block: &TransformerBlock, branch: Branch, x: &Tensor<3>) -> Vec<f64> {
    let y = values(block.forward(x.clone()));
    recover_branch(&y, &residual(block, branch, x))
}

/// Absolute tolerance on a recovered element: the f32 forward pass and the solve through one
/// or two LayerNorms lose about 1e-6 relative; kept elements are ≥ 1, dropped ones 0.
const TOL: f64 = 1e-4;

fn check_residual_dropout(branch: Branch, norm_first: bool, seed: u64) {
    let what = format!("{branch:?} residual dropout (norm_first = {norm_first})");
    let device = BackendKind::Flex.autodiff_device().unwrap();
    dl_core::seed_device(&device, seed);
    let block = block_dropping(branch, norm_first, &device);
    let x = input(&device);
    let c = branch_output();

    // Evaluation: the branch is added whole and unscaled.
    let eval = dropped_branch(&set_training(block.clone(), false), branch, &x);
    for (i, (&got, &want)) in eval.iter().zip(c.iter().cycle()).enumerate() {
        assert!(
            (got - f64::from(want)).abs() < TOL,
            "{what}: evaluation changed element {i}: {got}, expected {want}"
        );
    }

    // Training: each element 0 (dropped) or c / (1 - p) (kept); anchors stay 0.
    let scale = 1.0 / (1.0 - P);
    let (mut dropped, mut counted) = (0usize, 0usize);
    let mut masks = Vec::new();
    for _ in 0..3 {
        let train = dropped_branch(&block, branch, &x);
        let mut mask = Vec::with_capacity(train.len());
        for (i, (&got, &want)) in train.iter().zip(c.iter().cycle()).enumerate() {
            let kept = f64::from(want) * scale;
            if want == 0.0 {
                assert!(got.abs() < TOL, "{what}: anchor element {i} became {got}");
                continue;
            }
            counted += 1;
            if got.abs() < TOL {
                dropped += 1;
                mask.push(false);
            } else {
                assert!(
                    (got - kept).abs() < TOL,
                    "{what}: element {i} is {got}, expected 0 or {kept} (= {want} / (1 - p))"
                );
                mask.push(true);
            }
        }
        masks.push(mask);
    }
    let n = counted as f64;
    assert_eq!(counted, 3 * BATCH * TIME * (D - ANCHORS.len()));
    let fraction = dropped as f64 / n;
    assert!(
        (fraction - P).abs() < 6.0 * (P * (1.0 - P) / n).sqrt(),
        "{what}: dropped {fraction:.4} of {n} elements, expected {P}"
    );
    assert_ne!(masks[0], masks[1], "{what}: the same mask twice");
}

#[test]
fn post_norm_dropout_after_attention() {
    check_residual_dropout(Branch::Attention, false, 21);
}

#[test]
fn post_norm_dropout_after_feed_forward() {
    check_residual_dropout(Branch::FeedForward, false, 22);
}

#[test]
fn pre_norm_dropout_after_attention() {
    check_residual_dropout(Branch::Attention, true, 23);
}

#[test]
fn pre_norm_dropout_after_feed_forward() {
    check_residual_dropout(Branch::FeedForward, true, 24);
}
