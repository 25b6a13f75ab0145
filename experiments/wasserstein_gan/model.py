"""Networks of Arjovsky, Chintala & Bottou, "Wasserstein GAN" (ICML 2017, arXiv 1701.07875):
the MLP generator and critic of section 4 ("a 4-layer ReLU-MLP with 512 hidden units"),
here on 2-D points (a ring of Gaussians) instead of LSUN images.

`MLPGAN` holds both players and the noise size, as `shortsci_bench.tasks.gan.GANTask`
expects (`generator`, `critic`, `z_dim`).
"""

from __future__ import annotations

from torch import nn


def relu_mlp(d_in: int, d_out: int, hidden: int, layers: int) -> nn.Sequential:
    """`layers` linear layers (ReLU between them), `hidden` units wide: the paper's
    "4-layer ReLU-MLP" is layers=4 (three hidden ReLU layers)."""
    if layers < 2:
        raise ValueError(f"layers {layers}: an MLP here has at least one hidden layer")
    mods: list[nn.Module] = []
    d = d_in
    for _ in range(layers - 1):
        mods += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    mods.append(nn.Linear(d, d_out))
    return nn.Sequential(*mods)


class MLPGAN(nn.Module):
    """Generator z (z_dim) -> x (data_dim) and critic x -> one score, both ReLU MLPs."""

    def __init__(self, data_dim: int = 2, z_dim: int = 2, hidden: int = 512, layers: int = 4):
        super().__init__()
        self.z_dim = z_dim
        self.generator = relu_mlp(z_dim, data_dim, hidden, layers)
        self.critic = relu_mlp(data_dim, 1, hidden, layers)


class MNISTMLPGAN(nn.Module):
    """The paper's MLP players on flattened 28x28 MNIST digits (784 values in [0, 1]):
    generator z (z_dim) -> 784 through a ReLU MLP and a sigmoid (pixels in [0, 1], as the
    real images and the pinned evaluator expect), critic 784 -> one score (no sigmoid: the
    WGAN critic is unbounded; the GAN's loss takes logits)."""

    def __init__(self, z_dim: int = 100, hidden: int = 512, layers: int = 4, data_dim: int = 784):
        super().__init__()
        self.z_dim = z_dim
        self.generator = nn.Sequential(relu_mlp(z_dim, data_dim, hidden, layers), nn.Sigmoid())
        self.critic = relu_mlp(data_dim, 1, hidden, layers)
