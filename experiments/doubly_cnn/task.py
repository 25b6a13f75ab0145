"""Training a (doubly) convolutional network on CIFAR-10: the shared classification task,
whose record also carries the network's parameter counts (`DoublyCNN.parameter_counts`),
exact properties of the architecture."""

from __future__ import annotations

from shortsci_bench.tasks.classification import ClassificationTask


class DoublyCNNTask(ClassificationTask):
    def final_metrics(self) -> dict[str, float]:
        return {**super().final_metrics(), **self.model.parameter_counts()}
