"""Config composition: arms and tiers tables, the tier choice, the config hash, threads."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from shortsci_bench import config as C
from tests.conftest import compose_cfg


def test_arm_and_tier_tables_feed_the_fields():
    cfg = compose_cfg(["+experiment=batchnorm_mnist", "arm=plain", "scale=smoke"])
    assert cfg.model.batchnorm is False
    assert cfg.trainer.max_steps == cfg.tiers.smoke.steps
    cfg = compose_cfg(["+experiment=batchnorm_mnist", "arm=bn", "scale=paper"])
    assert cfg.model.batchnorm is True
    assert cfg.trainer.max_steps == 50_000
    assert cfg.dataset.batch_size == 60


def test_command_line_beats_the_tier_table():
    cfg = compose_cfg(["+experiment=batchnorm_mnist", "scale=quick", "trainer.max_steps=7"])
    assert cfg.trainer.max_steps == 7
    assert cfg.dataset.steps == 7  # the datamodule follows the trainer


def test_unknown_arm_names_the_choices():
    cfg = compose_cfg(["+experiment=batchnorm_mnist", "arm=nonsense", "scale=smoke"])
    with pytest.raises(C.ConfigError, match=r"arm 'nonsense'.*\['bn', 'plain'\]"):
        C.check_choices(cfg)
    # resolving without the check still names the problem, wrapped by OmegaConf
    with pytest.raises(Exception, match=r"arm 'nonsense'"):
        OmegaConf.to_container(cfg, resolve=True)


def test_auto_tier_follows_the_gpu():
    cfg = compose_cfg(["+experiment=batchnorm_mnist"])
    assert cfg.scale.tier == "auto"
    tier, why = C.resolve_tier(cfg, gpu_available=False)
    assert tier == "quick" and "no GPU" in why and cfg.scale.tier == "quick"
    cfg = compose_cfg(["+experiment=batchnorm_mnist"])
    assert C.resolve_tier(cfg, gpu_available=True)[0] == "paper"


def test_bad_tier_is_refused():
    cfg = compose_cfg(["+experiment=batchnorm_mnist", "scale=smoke"])
    OmegaConf.update(cfg, "scale.tier", "huge")
    with pytest.raises(C.ConfigError, match="not a tier"):
        C.resolve_tier(cfg)


def test_hash_ignores_where_and_how_but_not_what():
    base = ["+experiment=batchnorm_mnist", "scale=smoke"]
    h = C.config_hash(compose_cfg(base))
    assert (
        C.config_hash(compose_cfg([*base, "runs_dir=/elsewhere", "threads=3", "force=true"])) == h
    )
    assert C.config_hash(compose_cfg([*base, "data.root=/mnt/data", "logger=tensorboard"])) == h
    assert C.config_hash(compose_cfg([*base, "seed=1"])) != h
    assert C.config_hash(compose_cfg([*base, "arm=plain"])) != h
    assert C.config_hash(compose_cfg([*base, "task.optimizer.lr=0.01"])) != h


def test_threads_setting():
    assert C.cpu_threads(3) == 3
    assert C.cpu_threads("auto") >= 1
    with pytest.raises(C.ConfigError):
        C.cpu_threads(0)
