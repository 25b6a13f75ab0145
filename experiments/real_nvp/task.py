"""Real NVP's training objective: the NLL plus the paper's L2 on the scale parameters."""

from __future__ import annotations

from shortsci_bench.tasks.likelihood import LikelihoodTask


class RealNVPTask(LikelihoodTask):
    """`LikelihoodTask` whose training loss adds `l2_scale` x the sum of squares of the
    model's scale parameters (`model.scale_penalty()`: weight-norm magnitudes and tanh
    scales): the paper's L2 regularisation of the weight scale parameters, coefficient 5e-5
    (Dinh et al. 2017, section 4.1; `l2_coeff` in the authors' code), added to the mean NLL
    in nats per image as the code adds it. Evaluation reports the NLL alone."""

    def __init__(self, model, optimizer, l2_scale: float = 0.0, **kwargs):
        super().__init__(model, optimizer, **kwargs)
        self.l2_scale = float(l2_scale)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        loss = self.model.nll(x).mean()
        if self.l2_scale:
            loss = loss + self.l2_scale * self.model.scale_penalty()
        return self.check_finite(loss)
