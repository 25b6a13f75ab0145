"""`python -m shortsci_bench +experiment=NAME [tier=smoke|quick|paper] [seed=N] [arm=ARM]`."""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from shortsci_bench.config import ConfigError, register_resolvers
from shortsci_bench.data.errors import DatasetMissingError
from shortsci_bench.registry import RegistryError

register_resolvers()


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Run one job; return `optimized_metric` of its record, for sweepers such as Optuna."""
    from shortsci_bench.run import completed_record, run

    overrides = list(HydraConfig.get().overrides.task)
    if any(o.split("=", 1)[0].lstrip("+") == "scale" for o in overrides):
        print("[shortsci] note: `scale=` is now `tier=` (scale= still works)", file=sys.stderr)
    try:
        record = run(cfg, overrides)
    except (ConfigError, DatasetMissingError, RegistryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    if record is not None and record.status == "failed":
        sys.exit(1)
    metric = cfg.get("optimized_metric")
    if metric:
        record = record or completed_record(cfg)
        if record is None or metric not in record.metrics:
            raise ConfigError(f"optimized_metric {metric!r} is not among this run's metrics")
        return float(record.metrics[metric])
    return None


if __name__ == "__main__":
    main()
