"""Time one training epoch of `dl train` written in PyTorch: the same digits, normalisation,
models, batch size, optimizer and per-step bookkeeping, so that `dl train`'s epoch time can be
divided by this one.

    python benches/pytorch/epoch.py --model lstm --threads 1 --epochs 3 --limit 800

What one epoch does, as `dl train` does it (crates/dl-cli/src/train.rs):
- the training digits of fixtures/mnist/train.safetensors (or --data), the first --limit of them,
  normalised once with MNIST's mean and standard deviation, shuffled per epoch by a seeded
  permutation;
- per batch of --batch-size (the last one partial): the model's input view, forward,
  cross-entropy, the number of right predictions, backward, Adam (lr 1e-3, PyTorch defaults),
  and the loss and the count read back to the host once (`dl` reads both in one transfer);
- timing covers the batches only, not the end-of-epoch evaluation (as `samples_per_second`
  in dl's metrics.json).

Models (dl train's configurations, crates/dl-cli/src/model.rs): mlp 784-512-256-10 dropout 0.2;
cnn 32/64/128 channels, fc 512, dropout 0.5; lstm input 28 (one row per step), hidden 64,
2 layers, dropout 0.2; transformer over 16 patches of 7x7 through a linear patch embedding,
d_model 64, 8 heads, 2 post-norm blocks, d_ff 256, dropout 0.1, mean pooling.
Prints one JSON object: seconds and samples per second of every epoch.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "fixtures" / "gen"))

import models  # noqa: E402  (fixtures/gen/models.py: the chapter's networks)

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
SIDE, PATCH = 28, 7


def read_digits(path, limit):
    """The digit file of dl_io::DigitFile (crates/dl-io/src/digits.rs): safetensors with U8
    `images` [count, 28, 28] and `labels` [count]."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    images, labels = tensors["images"], tensors["labels"]
    count = labels.numel()
    n = min(count, limit) if limit else count
    images = images.reshape(count, -1)[:n].float()
    return (images / 255.0 - MNIST_MEAN) / MNIST_STD, labels[:n].long()


class PatchTransformer(models.Transformer):
    """The chapter's Transformer reading 7x7 patches through a linear patch embedding."""

    def __init__(self):
        super().__init__(1000, 64, 8, 2, 256, (SIDE // PATCH) ** 2, 10, 0.1)
        del self.embedding
        self.patch_embedding = nn.Linear(PATCH * PATCH, 64)

    def forward(self, x):
        x = self.patch_embedding(x) + self.pos_encoding[:, : x.size(1), :]
        x = self.dropout(x)
        for block in self.transformer_blocks:
            x = block(x)
        return self.fc(torch.mean(x, dim=1))


def _block_without_weights(self, x):
    # dl's training forward computes no attention weights; neither does this one (PyTorch's
    # fused attention path), as in bench.py.
    attn_output, _ = self.attention(x, x, x, need_weights=False)
    x = self.norm1(x + self.dropout(attn_output))
    return self.norm2(x + self.dropout(self.feed_forward(x)))


models.TransformerBlock.forward = _block_without_weights


def model_and_view(name):
    """The network and the view of a [n, 784] batch it reads."""
    if name == "mlp":
        return models.chapter_mlp(784, [512, 256], 10, 0.2), lambda x: x
    if name == "cnn":
        return models.ConvolutionalNeuralNetwork(), lambda x: x.view(-1, 1, SIDE, SIDE)
    if name == "lstm":
        return models.LongShortTermMemory(SIDE, 64, 2, 10, 0.2), lambda x: x.view(-1, SIDE, SIDE)
    if name == "transformer":
        per = SIDE // PATCH

        def patches(x):
            n = x.size(0)
            return (x.view(n, per, PATCH, per, PATCH).transpose(2, 3)
                    .reshape(n, per * per, PATCH * PATCH))

        return PatchTransformer(), patches
    raise SystemExit(f"unknown model {name}; expected mlp, cnn, lstm or transformer")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=800)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data", type=Path, default=ROOT / "fixtures" / "mnist" / "train.safetensors")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    images, labels = read_digits(args.data, args.limit)
    model, view = model_and_view(args.model)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    n = labels.numel()
    seconds, rates, losses = [], [], []
    for _ in range(args.epochs):
        order = torch.randperm(n)
        loss_sum, correct = 0.0, 0
        start = time.perf_counter()
        for first in range(0, n, args.batch_size):
            index = order[first:first + args.batch_size]
            x, y = view(images[index]), labels[index]
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            right = (logits.argmax(1) == y).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            value, count = torch.stack([loss.detach(), right.float()]).tolist()
            loss_sum += value * index.numel()
            correct += int(count)
        elapsed = time.perf_counter() - start
        seconds.append(elapsed)
        rates.append(n / elapsed)
        losses.append(loss_sum / n)
    print(json.dumps({
        "framework": f"torch {torch.__version__.split('+')[0]}",
        "model": args.model,
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "samples": n,
        "epoch_seconds": seconds,
        "samples_per_second": rates,
        "train_loss": losses,
    }))


if __name__ == "__main__":
    main()
