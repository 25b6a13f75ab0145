"""Config helpers: per-arm and per-tier settings, tier choice, the config hash.

An experiment config keeps its arm- and tier-specific settings in two tables,
`arms:` and `tiers:`, and reads them with `${pick:arms,KEY}` / `${pick:tiers,KEY}`.
A field set on the command line replaces the interpolation, so the user always wins.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

TIERS = ("smoke", "quick", "paper")
# Settings that say where or how to run, not what is run: they stay out of the hash,
# so moving the runs folder or the data mirror does not make a finished run "new".
_UNHASHED = (
    "runs_dir",
    "force",
    "threads",
    "data",
    "logger",
    "tiers",
    "arms",
    "hydra",
    "debug",
    "launch",
)
# devices and nodes stay in: under DDP the global batch is batch_size x devices.
_UNHASHED_TRAINER = ("accelerator", "enable_progress_bar")
_UNHASHED_DATASET = ("root", "mirror", "download", "cache_dir")


class ConfigError(ValueError):
    """A config that cannot run; the message names the setting and the fix."""


def _pick(table: str, key: str, *, _root_: DictConfig) -> Any:
    if table == "arms":
        choice = _root_.get("arm")
        options = _root_.get("arms") or {}
        what = "arm"
    elif table == "tiers":
        choice = _root_.scale.tier
        options = _root_.get("tiers") or {}
        what = "tier"
    else:
        raise ConfigError(f"${{pick:{table},{key}}}: the table must be `arms` or `tiers`")
    if choice == "auto":
        raise ConfigError(
            "the tier is still `auto`: call resolve_tier() before resolving the config"
        )
    if choice not in options:
        raise ConfigError(
            f"{what} {choice!r} is not defined for experiment {_root_.get('name')!r}; "
            f"choose one of {sorted(options)} (e.g. `{what if what == 'arm' else 'scale'}={next(iter(options), '?')}`)"
        )
    entry = options[choice]
    if key not in entry:
        raise ConfigError(f"{what} {choice!r} of {_root_.get('name')!r} has no setting {key!r}")
    return entry[key]


def check_choices(cfg: DictConfig) -> None:
    """Refuse an arm or tier the experiment does not define, naming the ones it does."""
    arms = cfg.get("arms") or {}
    if arms and cfg.get("arm") not in arms:
        raise ConfigError(
            f"arm {cfg.get('arm')!r} is not defined for experiment {cfg.get('name')!r}; "
            f"choose one of {sorted(arms)} (e.g. `arm={next(iter(arms))}`)"
        )
    tiers = cfg.get("tiers") or {}
    tier = cfg.scale.tier
    if tiers and tier != "auto" and tier not in tiers:
        raise ConfigError(
            f"experiment {cfg.get('name')!r} has no tier {tier!r}; choose one of {sorted(tiers)}"
        )


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("pick"):
        OmegaConf.register_new_resolver("pick", _pick)
    if not OmegaConf.has_resolver("mkdir"):
        # `${mkdir:${runs_dir}}`: a folder that must exist before a run starts (Optuna's SQLite)
        OmegaConf.register_new_resolver(
            "mkdir", lambda p: (os.makedirs(p, exist_ok=True), str(p))[1]
        )
    if not OmegaConf.has_resolver("csv"):
        # `${csv:${oc.dict.keys:arms}}` -> "bn,plain", the form a sweep's params take
        OmegaConf.register_new_resolver("csv", lambda items: ",".join(str(i) for i in items))


def resolve_tier(cfg: DictConfig, gpu_available: bool | None = None) -> tuple[str, str]:
    """Turn `scale.tier=auto` into a concrete tier; return (tier, why)."""
    tier = cfg.scale.tier
    if tier != "auto":
        if tier not in TIERS:
            raise ConfigError(f"scale={tier!r} is not a tier; use one of {', '.join(TIERS)}")
        return tier, "chosen on the command line (scale=...)" if tier else "default"
    if gpu_available is None:
        import torch

        gpu_available = torch.cuda.is_available()
    tier = "paper" if gpu_available else "quick"
    why = (
        "a GPU is present"
        if gpu_available
        else "no GPU here; pass scale=paper to force the paper's setting"
    )
    OmegaConf.update(cfg, "scale.tier", tier)
    return tier, why


def hashable_view(cfg: DictConfig) -> dict[str, Any]:
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    view = {k: v for k, v in container.items() if k not in _UNHASHED}
    trainer = dict(view.get("trainer") or {})
    for k in _UNHASHED_TRAINER:
        trainer.pop(k, None)
    view["trainer"] = trainer
    if isinstance(view.get("dataset"), dict):
        view["dataset"] = {k: v for k, v in view["dataset"].items() if k not in _UNHASHED_DATASET}
    return view


def config_hash(cfg: DictConfig) -> str:
    """A stable hash of what the run computes (not where it runs)."""
    blob = json.dumps(hashable_view(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cpu_threads(setting: Any) -> int:
    """Threads for torch: `auto` = the cores this process may use (affinity and cgroup quota).

    Measured here: on 2 busy cores, 2 torch threads ran small nets 5-17x slower than 1,
    so `auto` leaves one core free on small machines.
    """
    if setting not in (None, "auto"):
        n = int(setting)
        if n < 1:
            raise ConfigError(f"threads={setting!r}: use a positive integer or `auto`")
        return n
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cores = max(1, min(cores, int(quota)))
    return 1 if cores <= 2 else cores - 1


def _cgroup_cpu_quota() -> float | None:
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            quota, period = fh.read().split()
        return None if quota == "max" else float(quota) / float(period)
    except (OSError, ValueError):
        return None
