"""Checks of the command line that run before torch and Lightning are imported (~6 s), so a
mistyped key or a bad value costs well under a second and says what to write instead.

- `unknown_keys(argv)`: a value override of a key the composed config lacks, with the
  closest existing key ("did you mean `trainer.max_steps`?"), instead of Hydra's advice
  to add `+` (which then fails deep inside the run).
- `check_values(cfg)`: types and ranges of the settings every experiment shares.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from shortsci_bench.config import _GROUPS, ConfigError, check_choices, register_resolvers

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def _is_group(key: str) -> bool:
    return key in _GROUPS or "/" in key or "@" in key


def _leaf_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    if isinstance(node, DictConfig):
        for k in node.keys():
            path = f"{prefix}{k}"
            keys.append(path)
            keys += _leaf_keys(node._get_node(k), path + ".")
    return keys


def unknown_keys(argv: Sequence[str]) -> str | None:
    """A one-line message for the first value override whose key does not exist, or None.

    Composes the config with the command line's group choices only (the value overrides
    are what is checked); sweeps over groups and Hydra's own keys are left to Hydra.
    """
    args = [a for a in argv if not a.startswith("-") and "=" in a]
    for arg in args:
        key, value = arg.split("=", 1)
        if key.lstrip("+") in ("sweep.seeds", "sweep.arms") and "," in value:
            # Hydra would sweep over the preset's own list as well as over seed/arm: every
            # run several times (the preset's keys are not settings, so the copies collide).
            what = "seed" if key.endswith("seeds") else "arm"
            return (
                f"`{arg}` sweeps over the preset itself and repeats every job: write "
                f"`{what}={value}` (it replaces the preset's {what}s)"
            )
    groups, values = [], []
    for arg in args:
        key = arg.split("=", 1)[0]
        bare = key.lstrip("+~")
        if key.startswith(("+", "~")) or bare.startswith("hydra") or _is_group(bare):
            if _is_group(bare) and "," in arg.split("=", 1)[1]:
                return None  # a sweep over config files: each job composes differently
            groups.append(arg)
        else:
            values.append(key)
    if not values:
        return None
    from hydra import compose, initialize_config_dir

    register_resolvers()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=[g for g in groups if "hydra" not in g])
    except Exception:
        return None  # Hydra will report what is wrong with the groups itself
    known = _leaf_keys(cfg)
    for key in values:
        if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING and key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"did you mean `{close[0]}`?" if close else "no setting is close to it;"
            return (
                f"`{key}` is not a setting of this config: {hint} "
                f"(write `+{key}=...` only to add a new key)"
            )
    return None


_MISSING = object()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_values(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first common setting with a wrong type or range."""
    seed = cfg.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed={seed!r}: must be an integer >= 0 (e.g. seed=0)")
    seeds = cfg.get("seeds")
    if seeds is not None:
        listed = list(seeds) if OmegaConf.is_list(seeds) or isinstance(seeds, list) else None
        if not listed or any(
            not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in listed
        ):
            raise ConfigError(
                f"seeds={seeds!r}: must be a list of integers >= 0 (e.g. seeds=0,1,2)"
            )
        if len(set(listed)) != len(listed):
            raise ConfigError(f"seeds={listed}: a seed is listed twice")
    lr = OmegaConf.select(cfg, "task.optimizer.lr", default=None)
    if lr is not None and not (_number(lr) and math.isfinite(lr) and lr > 0):
        raise ConfigError(
            f"task.optimizer.lr={lr!r}: must be a positive number (e.g. task.optimizer.lr=0.1)"
        )
    steps = OmegaConf.select(cfg, "trainer.max_steps", default=None)
    if steps is not None and not (
        isinstance(steps, int) and not isinstance(steps, bool) and steps > 0
    ):
        raise ConfigError(
            f"trainer.max_steps={steps!r}: must be a positive integer (e.g. trainer.max_steps=1000)"
        )
    threads = cfg.get("threads", "auto")
    if threads not in (None, "auto") and not (
        isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1
    ):
        raise ConfigError(
            f"threads={threads!r}: must be `auto` or an integer >= 1 (e.g. threads=1)"
        )
    check_choices(cfg)  # tier and arm
