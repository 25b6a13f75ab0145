"""One global step = one batch, also with several optimizers (a GAN-like task): the global
step counts batches, the budget is in batches, and a resumed run ends where an uninterrupted
one does, bit for bit. A task that breaks the contract is stopped with the reason."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn

from shortsci_bench.data.batches import GeneratedSteps, start_at_global_step
from shortsci_bench.data.contracts import HasProvenance, HasTestSplit
from shortsci_bench.tasks.base import HarnessTask, StepContractError

STEPS = 12


class ToyData(L.LightningDataModule):
    """Batch i: 16 draws of a 2-D Gaussian, seeded by (seed, i)."""

    def __init__(self, steps: int = STEPS, seed: int = 0):
        super().__init__()
        self.steps, self.seed = steps, seed

    def train_dataloader(self):
        def build(g: torch.Generator) -> torch.Tensor:
            return torch.randn(16, 2, generator=g) * 0.5 + 2.0

        return GeneratedSteps(build, self.steps, self.seed, start_at_global_step(self.trainer))


class TwoPlayer(HarnessTask):
    """A generator and a critic, each with its own Adam: two optimizer steps per batch."""

    def __init__(self, counted_both: bool = False):
        super().__init__(optimizer=torch.optim.Adam)
        self.automatic_optimization = False
        self.generator, self.critic = nn.Linear(2, 2), nn.Linear(2, 1)
        self.counted_both = counted_both
        self.batches_seen: list[float] = []

    def configure_optimizers(self):
        return (
            torch.optim.Adam(self.generator.parameters(), lr=0.01),
            torch.optim.Adam(self.critic.parameters(), lr=0.01),
        )

    def training_step(self, real: torch.Tensor, batch_idx: int) -> None:
        self.batches_seen.append(float(real.sum()))
        opt_g, opt_c = self.optimizers()
        noise = torch.randn(real.shape, generator=torch.Generator().manual_seed(self.global_step))

        def loss_c():
            return self.critic(self.generator(noise).detach()).mean() - self.critic(real).mean()

        def loss_g():
            return -self.critic(self.generator(noise)).mean()

        if self.counted_both:  # what Lightning does by default: two global steps a batch
            for opt, loss in ((opt_c, loss_c), (opt_g, loss_g)):
                opt.zero_grad()
                self.manual_backward(loss())
                opt.step()
        else:
            self.step_optimizers((opt_c, loss_c), (opt_g, loss_g))


def _fit(task: TwoPlayer, max_steps: int, ckpt: str | None = None) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=max_steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(task, datamodule=ToyData(), ckpt_path=ckpt)
    return trainer


def test_two_optimizers_count_one_global_step_per_batch():
    torch.manual_seed(0)
    task = TwoPlayer()
    trainer = _fit(task, max_steps=STEPS)
    assert trainer.global_step == STEPS and len(task.batches_seen) == STEPS


def test_two_optimizers_resume_exactly(tmp_path):
    torch.manual_seed(0)
    whole = TwoPlayer()
    _fit(whole, max_steps=STEPS)

    torch.manual_seed(0)
    first = TwoPlayer()
    trainer = _fit(first, max_steps=5)
    ckpt = str(tmp_path / "half.ckpt")
    trainer.save_checkpoint(ckpt)
    torch.manual_seed(123)  # the restore, not the ambient RNG, decides what follows
    second = TwoPlayer()
    _fit(second, max_steps=STEPS, ckpt=ckpt)
    assert first.batches_seen + second.batches_seen == whole.batches_seen
    for a, b in zip(whole.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


def test_counting_every_optimizer_step_is_refused():
    with pytest.raises(StepContractError, match="2 global steps for 1 batches"):
        _fit(TwoPlayer(counted_both=True), max_steps=STEPS)


def test_datamodule_contracts_are_checkable():
    from shortsci_bench.data.mnist import MNISTDataModule

    dm = MNISTDataModule(root="unused", download=False)
    assert isinstance(dm, HasProvenance) and isinstance(dm, HasTestSplit)
    assert not isinstance(ToyData(), HasProvenance)
