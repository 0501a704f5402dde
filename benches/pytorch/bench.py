"""Time the dl-bench plan in PyTorch on the CPU: the same models, shapes and steps as the Rust
side, with the same thread count, warm-up and repetitions, writing the same JSON schema.

    python benches/pytorch/bench.py --plan target/bench/plan.json --out target/bench/pytorch.json

The plan is written by the Rust runner (`cargo run --release -p dl-bench -- --plan ...`), so
both sides always agree on the cases; `cargo xtask bench` runs both. The models are the
chapter's own classes from fixtures/gen/models.py (the ones our parity fixtures come from).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "fixtures" / "gen"))

import models  # noqa: E402  (fixtures/gen/models.py: the chapter's networks)

SEED = 7
LEARNING_RATE = 1e-3


def _block_forward_without_weights(self, x):
    # The chapter's block asks for per-head attention weights (the fixtures record them); the
    # Rust TransformerClassifier::forward does not compute them, so neither do we here: the
    # same work, and PyTorch's fused attention path.
    attn_output, _ = self.attention(x, x, x, need_weights=False)
    x = self.norm1(x + self.dropout(attn_output))
    return self.norm2(x + self.dropout(self.feed_forward(x)))


models.TransformerBlock.forward = _block_forward_without_weights


def build(case):
    """(module, input, target) for a case; shapes as in crates/dl-bench/src/cases.rs."""
    b, t = case["batch"], case["seq_len"]
    subject = case["subject"]
    target = torch.randint(0, 10, (b,))
    if subject == "mlp":
        return models.chapter_mlp(784, [512, 256], 10, 0.2), torch.randn(b, 784), target
    if subject == "cnn":
        return models.ConvolutionalNeuralNetwork(), torch.randn(b, 1, 28, 28), target
    if subject == "lstm":
        return models.LongShortTermMemory(28, 128, 2, 10, 0.2), torch.randn(b, t, 28), target
    if subject == "transformer":
        model = models.Transformer(1000, 64, 8, 2, 256, 100, 10, 0.1)
        return model, torch.randint(0, 1000, (b, t)), target
    if subject == "lstm_layer":
        return LstmLayer(), torch.randn(b, t, 28), None
    if subject == "attention":
        return SelfAttention(), torch.randn(b, t, 64), None
    if subject == "conv_block":
        block = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2))
        return block, torch.randn(b, 1, 28, 28), None
    if subject == "dense":
        return nn.Sequential(nn.Linear(784, 512), nn.ReLU()), torch.randn(b, 784), None
    raise ValueError(f"unknown subject {subject}")


class LstmLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(28, 128, batch_first=True)

    def forward(self, x):
        return self.lstm(x)[0]


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = nn.MultiheadAttention(64, 8, batch_first=True)

    def forward(self, x):
        return self.attention(x, x, x, need_weights=False)[0]


def iteration(case):
    """A function running one timed iteration, built outside the timing."""
    model, x, target = build(case)
    if case["step"] == "inference":
        model.eval()

        def infer():
            with torch.inference_mode():
                return model(x).flatten()[0].item()

        return infer
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)

    def train():
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), target)
        loss.backward()
        optimizer.step()
        return loss.item()

    return train


def record(case_id, samples):
    ordered = sorted(samples)
    mean = statistics.fmean(ordered)
    return {
        "id": case_id,
        "backend": "pytorch",
        "median_ns": statistics.median(ordered),
        "mean_ns": mean,
        "min_ns": ordered[0],
        "max_ns": ordered[-1],
        "stddev_ns": statistics.pstdev(ordered, mean),
        "repetitions": len(ordered),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    plan = json.loads(args.plan.read_text())
    torch.set_num_threads(plan["threads"])
    torch.manual_seed(SEED)
    records = []
    for case in plan["cases"]:
        run = iteration(case)
        for _ in range(plan["warmup"]):
            run()
        samples = []
        for _ in range(plan["repetitions"]):
            start = time.perf_counter_ns()
            run()
            samples.append(float(time.perf_counter_ns() - start))
        rec = record(case["id"], samples)
        records.append(rec)
        print(f"{case['id']:<36} {'pytorch':<8} {rec['median_ns'] / 1e6:>9.3f} ms "
              f"(median of {rec['repetitions']})", file=sys.stderr)
    result = {
        "schema": 1,
        "framework": f"torch {torch.__version__.split('+')[0]}",
        "mode": plan["mode"],
        "threads": torch.get_num_threads(),
        "warmup": plan["warmup"],
        "repetitions": plan["repetitions"],
        "records": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
