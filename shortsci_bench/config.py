"""Config composition after Hydra: the tier, the arm and tier overlays, the config hash.

An experiment config states the paper's settings at their real paths. Its `tiers:` and
`arms:` tables hold sparse overlays that state only what differs, applied in that order
(tier, then arm); the command line wins over both. An overlay block that names a
different `_target_` replaces the block instead of merging into it, so an arm can switch
a model class. `finalize()` does this once, right after Hydra composes the config.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from shortsci_bench import registry
from shortsci_bench.registry import TIERS

# Settings that say where or how to run, not what is run: they stay out of the hash,
# so moving the runs folder or the data mirror does not make a finished run "new", and
# the launch mode (a single run, a sweep preset, multirun syntax) does not either.
_UNHASHED = (
    "runs_dir",
    "force",
    "threads",
    "print_config",
    "logger",
    "tiers",
    "arms",
    "metrics",
    "learning_check",
    "hydra",
    "debug",
    "launch",
    "sweep",
    "finalized",
    "optimized_metric",
    "variant",
    "seeds",  # several seeds in one process: each seed's run keeps its single-run hash
    "seed_batching",
    "pack",
)
# devices and nodes stay in: under DDP the global batch is batch_size x devices.
_UNHASHED_TRAINER = ("accelerator", "enable_progress_bar")
_UNHASHED_DATASET = ("root", "mirror", "download", "cache_dir")
# The divergence bound only decides when to stop a run that has blown up; runs that stay
# under it compute the same, so finished runs keep their hash.
_UNHASHED_TASK = ("divergence",)
# Config groups: an override of one of these on the command line picks a file, it does
# not set a value, so it is not re-applied over the overlays.
_GROUPS = (
    "experiment",
    "dataset",
    "model",
    "task",
    "trainer",
    "logger",
    "scale",
    "sweep",
    "hparams_search",
    "callbacks",
)


class ConfigError(ValueError):
    """A config that cannot run; the message names the setting and the fix."""


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("mkdir"):
        # `${mkdir:${runs_dir}}`: a folder that must exist before a run starts (Optuna's SQLite)
        OmegaConf.register_new_resolver(
            "mkdir", lambda p: (os.makedirs(p, exist_ok=True), str(p))[1]
        )
    if not OmegaConf.has_resolver("csv"):
        # `${csv:${oc.dict.keys:arms}}` -> "bn,plain", the form a sweep's params take
        OmegaConf.register_new_resolver("csv", lambda items: ",".join(str(i) for i in items))
    if not OmegaConf.has_resolver("shortsci_help"):
        # conf/config.yaml's hydra.help.template: `--help` lists the experiments
        OmegaConf.register_new_resolver("shortsci_help", registry.help_text)
    if not OmegaConf.has_resolver("pack_jobs"):
        # hydra/launcher=packed: jobs per GPU from its free memory and the cores (packing.py)
        from shortsci_bench.packing import pack_jobs

        OmegaConf.register_new_resolver("pack_jobs", pack_jobs)
    if not OmegaConf.has_resolver("paper_searchpath"):
        # conf/config.yaml's hydra.searchpath: every paper's conf/ folder, found, not listed
        OmegaConf.register_new_resolver("paper_searchpath", registry.searchpath)


def check_choices(cfg: DictConfig) -> None:
    """Refuse an arm or tier the experiment does not define, naming the ones it does."""
    arms = cfg.get("arms") or {}
    if arms and cfg.get("arm") not in arms:
        raise ConfigError(
            f"arm {cfg.get('arm')!r} is not defined for experiment {cfg.get('name')!r}; "
            f"choose one of {sorted(arms)} (e.g. `arm={next(iter(arms))}`)"
        )
    tier = cfg.get("tier")
    if tier != "auto" and tier not in TIERS:
        raise ConfigError(f"tier={tier!r} is not a tier; use one of {', '.join(TIERS)}")


def resolve_tier(cfg: DictConfig, gpu_available: bool | None = None) -> tuple[str, str]:
    """Turn `tier=auto` into a concrete tier; return (tier, why)."""
    tier = cfg.tier
    if tier != "auto":
        if tier not in TIERS:
            raise ConfigError(f"tier={tier!r} is not a tier; use one of {', '.join(TIERS)}")
        return tier, "chosen on the command line (tier=...)"
    if gpu_available is None:
        import torch

        gpu_available = torch.cuda.is_available()
    tier = "paper" if gpu_available else "quick"
    why = (
        "a GPU is present"
        if gpu_available
        else "no GPU here; pass tier=paper to force the paper's setting"
    )
    OmegaConf.update(cfg, "tier", tier)
    return tier, why


def command_line_keys(overrides: Sequence[str]) -> list[str]:
    """The value settings among Hydra overrides (`a.b=1`, `+a.b=1`, `++a.b=1`), in order;
    group choices (`dataset=mnist`, `+experiment=x`) and deletions are left out."""
    keys = []
    for text in overrides:
        key = text.split("=", 1)[0].lstrip("+~")
        if "=" not in text or text.startswith("~") or "/" in key or "@" in key:
            continue
        if key in _GROUPS or key.startswith("hydra."):
            continue
        keys.append(key)
    return keys


def _overlay(node: DictConfig, patch: dict[str, Any], where: str, path: str = "") -> None:
    for key, value in patch.items():
        here = f"{path}{key}"
        current = node.get(key) if key in node else None
        if (
            isinstance(value, dict)
            and "_target_" in value
            and (
                not isinstance(current, DictConfig) or current.get("_target_") != value["_target_"]
            )
        ):
            with open_dict(node):
                node[key] = value  # another class: the block is replaced, not merged
        elif isinstance(value, dict) and isinstance(current, DictConfig):
            _overlay(current, value, where, here + ".")
        elif key in node:
            node[key] = value
        else:
            raise ConfigError(
                f"{where} sets `{here}`, which the experiment's config does not have; "
                "state its paper value in the config first"
            )


def finalize(
    cfg: DictConfig, overrides: Sequence[str] = (), gpu_available: bool | None = None
) -> tuple[str, str]:
    """Resolve the tier, apply the tier's and the arm's overlays, re-apply the command
    line over them; return (tier, why). Idempotent: a finalized config is left alone."""
    register_resolvers()
    if cfg.get("finalized"):
        return str(cfg.tier), "finalized before"
    if not cfg.get("name"):
        raise ConfigError(
            "no experiment chosen: add `+experiment=NAME` "
            "(`python -m shortsci_bench.registry` lists them)"
        )
    check_choices(cfg)
    tier, why = resolve_tier(cfg, gpu_available)
    keys = command_line_keys(overrides)
    given = {k: OmegaConf.select(cfg, k) for k in keys}
    tiers = cfg.get("tiers") or {}
    arms = cfg.get("arms") or {}
    if tiers and tier not in tiers:
        raise ConfigError(
            f"experiment {cfg.name!r} has no tier {tier!r}; choose one of {sorted(tiers)}"
        )
    for where, entry, meta in (
        (f"tier {tier!r}", tiers.get(tier), registry.TIER_META),
        (f"arm {cfg.arm!r}", arms.get(cfg.arm), registry.ARM_META),
    ):
        patch = OmegaConf.to_container(entry, resolve=False) if entry is not None else {}
        for k in meta:
            patch.pop(k, None)
        _overlay(cfg, patch, f"{where} of {cfg.name!r}")
    for key, value in given.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    with open_dict(cfg):
        # A run is labelled with its tier only if it computes exactly the tier's settings;
        # a command-line change of a setting makes it a variant, judged apart from the tier.
        if any(is_setting(k) for k in given) and not cfg.get("variant"):
            cfg.variant = f"custom-{settings_hash(cfg)[:8]}"
        cfg.finalized = True
    return tier, why


_NOT_SETTINGS = ("seed", "arm", "tier", "variant", "name", "paper")


def is_setting(key: str) -> bool:
    """Whether a config key changes what a run computes (so belongs in its identity):
    not the seed, the arm or tier being chosen, nor where or how it runs."""
    parts = key.split(".")
    if parts[0] in _UNHASHED or parts[0] in _NOT_SETTINGS:
        return False
    if parts[0] == "trainer" and len(parts) > 1 and parts[1] in _UNHASHED_TRAINER:
        return False
    if parts[0] == "dataset" and len(parts) > 1 and parts[1] in _UNHASHED_DATASET:
        return False
    if parts[0] == "task" and len(parts) > 1 and parts[1] in _UNHASHED_TASK:
        return False
    return True


def settings_hash(cfg: DictConfig) -> str:
    """The hash of what a run computes apart from its seed: equal for every seed of one
    setting, so seeds of one experiment arm pool and a run of other settings never does."""
    view = copy.deepcopy(cfg)
    with open_dict(view):
        view.seed = 0  # and every `${seed}` copy with it
    return config_hash(view)


def tier_info(cfg: DictConfig) -> DictConfig:
    """The chosen tier's `runtime` and `notes`."""
    return (cfg.get("tiers") or {}).get(cfg.tier) or OmegaConf.create({})


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
    if isinstance(view.get("task"), dict):
        view["task"] = {k: v for k, v in view["task"].items() if k not in _UNHASHED_TASK}
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
