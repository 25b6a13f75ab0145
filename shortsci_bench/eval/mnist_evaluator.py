"""A pinned MNIST evaluator network, for sample-quality metrics of generative models.

A small CNN (`EvaluatorCNN`: two 5x5 conv + max-pool layers, a 64-unit feature layer, 10
logits; about 47,000 weights) trained by the harness on the 60,000 MNIST training images
with one command, deterministic on one CPU thread:

    python -m shortsci_bench.eval.mnist_evaluator train     # writes mnist_evaluator.pt/.json

The checkpoint is committed beside this file; its sha256 is pinned here (`PINNED_SHA256`)
and checked whenever it is loaded, and `mnist_evaluator.json` records its test accuracy,
its training settings and the torch version that made it. Retraining on another machine
or torch version may give other bits (and another hash): the pin then fails loudly instead
of quietly changing every published FID.

`MNISTSampleQuality` turns it into the metrics a GAN task records at each evaluation:
the Fréchet distance between its 64-d features of samples and of real test images
(Heusel et al. 2017's FID formula on this network, not on Inception), and the histogram
of the labels it gives the samples (entropy, digits covered, the most frequent digit's share),
and an MNIST analogue of Salimans et al. (2016)'s Inception score, exp(E_x KL(p(y|x) || p(y)))
with this network's class probabilities in place of Inception's (`inception_score`; from 1,
samples it cannot tell apart, to 10, confident labels spread evenly over the digits).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from shortsci_bench.data.batches import TrainStream
from shortsci_bench.eval.samples import feature_statistics, frechet_distance

HERE = Path(__file__).resolve().parent
CHECKPOINT = HERE / "mnist_evaluator.pt"
CARD = HERE / "mnist_evaluator.json"
# sha256 of the committed checkpoint (see the module docstring): 98.44% test accuracy.
PINNED_SHA256: str | None = "410f596ed0a7721b45c18cbf27ee7729cb510243fbb3361a931f694035c5e4e2"
# The training recipe: part of what the pin stands for.
RECIPE = {"seed": 0, "steps": 1000, "batch_size": 128, "lr": 1e-3, "optimizer": "Adam"}


class EvaluatorCNN(nn.Module):
    """28x28 images in [0, 1] (or flattened, 784) -> 10 logits; `features` gives the 64-d
    ReLU layer before them."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5, padding=2)
        self.conv2 = nn.Conv2d(16, 32, 5, padding=2)
        self.fc = nn.Linear(32 * 7 * 7, 64)
        self.out = nn.Linear(64, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, 1, 28, 28)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def train_evaluator(
    images: torch.Tensor,
    labels: torch.Tensor,
    seed: int = RECIPE["seed"],
    steps: int = RECIPE["steps"],
    batch_size: int = RECIPE["batch_size"],
    lr: float = RECIPE["lr"],
) -> EvaluatorCNN:
    """Train the evaluator: Adam on cross-entropy, batches drawn by the harness's seeded
    stream (batch i depends only on the seed and i), on one thread for exact repeats."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        net = EvaluatorCNN()
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        for x, y in TrainStream((images, labels), batch_size, steps, seed):
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return net.eval()
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    preds = torch.cat([net(x).argmax(1) for x in images.split(2000)])
    return float((preds == labels).double().mean())


def load_evaluator(path: Path = CHECKPOINT, sha256: str | None = None) -> EvaluatorCNN:
    """The pinned evaluator, after checking the file's sha256 against the pin."""
    pin = sha256 or PINNED_SHA256
    if pin is None:
        raise RuntimeError(
            "no pinned MNIST evaluator: run `python -m shortsci_bench.eval.mnist_evaluator train`"
        )
    digest = file_sha256(path)
    if digest != pin:
        raise RuntimeError(
            f"MNIST evaluator {path} has sha256 {digest}, but {pin} is pinned: the checkpoint "
            "changed; every FID and label histogram would change with it"
        )
    net = EvaluatorCNN()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()


def inception_score(probs: torch.Tensor) -> float:
    """exp(E_x KL(p(y|x) || p(y))) (Salimans et al. 2016, section 4), p(y) the mean of the
    rows of `probs` (n, K), each a class distribution p(y|x). One set, not the paper's mean
    over 10 splits. 0 log 0 counts as 0."""
    p = probs.double()
    marginal = p.mean(0, keepdim=True)
    terms = torch.where(p > 0, p * (p.log() - marginal.log()), torch.zeros_like(p))
    return float(terms.sum(1).mean().exp())


class MNISTSampleQuality:
    """Sample-quality metrics of MNIST-like samples (values in [0, 1], any shape with 784
    pixels per sample) against real images, on the pinned evaluator's features and labels."""

    def __init__(self, min_share: float = 0.25, path: str | None = None, sha256: str | None = None):
        self.net = load_evaluator(Path(path) if path else CHECKPOINT, sha256)
        self.min_share = min_share
        self._real_key: tuple | None = None
        self._real_stats = None

    @torch.no_grad()
    def __call__(self, fake: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
        fake, real = fake.detach().float().cpu(), real.detach().float().cpu()
        key = (real.shape, float(real.sum()))
        if key != self._real_key:  # the pinned real set: its statistics once per run
            self._real_key, self._real_stats = key, feature_statistics(self.net.features(real))
        f_fake = self.net.features(fake)
        fid = frechet_distance(*feature_statistics(f_fake), *self._real_stats)
        logits = self.net.out(f_fake)
        labels = logits.argmax(1)
        share = torch.bincount(labels, minlength=10).double() / len(labels)
        nz = share[share > 0]
        return {
            "quality/fid": fid,
            "quality/label_entropy": float(-(nz * nz.log()).sum()),
            "quality/digits": float((share >= self.min_share / 10).sum()),
            "quality/top_digit_share": float(share.max()),
            "quality/inception_score": inception_score(logits.softmax(1)),
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shortsci_bench.eval.mnist_evaluator")
    parser.add_argument("command", choices=["train", "check"])
    parser.add_argument("--root", default=None, help="MNIST root (default: $SHORTSCI_DATA or data)")
    parser.add_argument("--out", default=str(CHECKPOINT))
    args = parser.parse_args(argv)
    import os

    from shortsci_bench.data.mnist import load_mnist, to_tensors

    train, test = load_mnist(args.root or os.environ.get("SHORTSCI_DATA", "data"), download=False)
    (x_train, y_train), (x_test, y_test) = to_tensors(train), to_tensors(test)
    if args.command == "check":
        net = load_evaluator()
        card = json.loads(CARD.read_text())
        acc = accuracy(net, x_test, y_test)
        print(f"sha256 ok; test accuracy {acc:.4f} (card: {card['test_accuracy']:.4f})")
        return
    t0 = time.perf_counter()
    net = train_evaluator(x_train, y_train)
    out = Path(args.out)
    torch.save(net.state_dict(), out)
    card = {
        "file": out.name,
        "sha256": file_sha256(out),
        "test_accuracy": accuracy(net, x_test, y_test),
        "test_errors": int(round((1 - accuracy(net, x_test, y_test)) * len(y_test))),
        "recipe": RECIPE,
        "command": "python -m shortsci_bench.eval.mnist_evaluator train",
        "torch": torch.__version__,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "parameters": sum(p.numel() for p in net.parameters()),
    }
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))
    if not math.isfinite(card["test_accuracy"]):
        raise SystemExit("evaluator training failed")


if __name__ == "__main__":
    main()
