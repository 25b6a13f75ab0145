"""The one registry: papers, their experiments, arms, tiers and metrics.

A paper is one folder, `experiments/<slug>/`, named by its slug:

    experiments/<slug>/
        claims.yaml                    # quoted claims and how each is judged
        conf/experiment/<name>.yaml    # runnable experiments (Hydra overlays); also
                                       # conf/dataset/ for a paper's own generated data
        model.py, task.py, data.py     # its plain nn.Modules, Lightning task, data
        test_<slug>.py                 # its tests
        results/                       # published run records (never typed by hand)
        README.md                      # its page, generated from this registry

Nothing is listed by hand: an experiment is registered by its config file. Each
experiment config declares `paper`, its default `arm`, `arms` (each a one-line `about`
and a sparse overlay), `tiers` (each `runtime`, `notes` and a sparse overlay over the
paper's settings, which are the config's own values) and `metrics` (name -> meaning).
Read with PyYAML only (no torch, no Hydra), so the collector and the command line's
early checks can use it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

# Tiers, lowest to highest, and run statuses: defined here only.
Tier = Literal["smoke", "quick", "paper"]
TIERS: tuple[str, ...] = get_args(Tier)
TIER_RANK = {t: i for i, t in enumerate(TIERS)}
# `interrupted`: a stop signal (SIGTERM, SIGUSR1/2) saved a checkpoint and ended the run
# early; rerunning the same command resumes it. The others are final ("done").
Status = Literal["completed", "diverged", "failed", "interrupted"]
STATUSES: tuple[str, ...] = get_args(Status)
DONE_STATUSES: tuple[str, ...] = ("completed", "diverged", "failed")

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS_DIR = REPO / "experiments"
CONF_DIR = REPO / "conf"

# Keys of an arm or tier entry that describe it; everything else is its overlay.
ARM_META = ("about",)
TIER_META = ("runtime", "notes")


class RegistryError(ValueError):
    """An experiment config the registry cannot read; the message names the file."""


@dataclass(frozen=True)
class Arm:
    name: str
    about: str
    overlay: dict[str, Any]


@dataclass(frozen=True)
class TierSpec:
    name: str
    runtime: str
    notes: tuple[str, ...]
    overlay: dict[str, Any]


@dataclass(frozen=True)
class LearningCheck:
    """A short run of the paper's configuration that must learn (issue 13): only the number
    of updates and the evaluation are shrunk (`overrides`), never the model or the batch."""

    arm: str
    steps: int
    evals: int  # evaluations over the budget
    metric: str  # a metric of the evaluation history (validation during training)
    higher_is_better: bool
    fall_back: float  # the last evaluation may trail the best by at most this much
    overrides: tuple[str, ...]
    why: str = ""  # a known finding when the check is expected to fail (xfail)


@dataclass(frozen=True)
class Experiment:
    name: str
    paper: str
    path: Path
    default_arm: str
    arms: dict[str, Arm]
    tiers: dict[str, TierSpec]
    metrics: dict[str, str]
    header: str = field(repr=False, default="")
    learning_check: LearningCheck | None = None
    # whether `seeds=[...]` trains the seeds stacked in one process (shortsci_bench.seedbatch);
    # `seed_batching: true` in the config, absent or false: one after another
    seed_batching: bool = False

    @property
    def paper_dir(self) -> Path:
        return EXPERIMENTS_DIR / self.paper


def _split(entry: dict | None, meta: tuple[str, ...]) -> tuple[dict, dict]:
    entry = dict(entry or {})
    return {k: entry.pop(k) for k in meta if k in entry}, entry


def _header(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        if line.startswith("# @package"):
            continue
        lines.append(line[1:].strip())
    return "\n".join(lines).strip()


def _merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _load(path: Path) -> dict:
    """The YAML of an experiment config, over any sibling experiment its `defaults` names
    (e.g. `bnlstm_pmnist` is `bnlstm_seqmnist` with a permutation), as Hydra composes it."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path}: not valid YAML ({exc})") from exc
    base: dict = {}
    for entry in raw.get("defaults") or []:
        if isinstance(entry, str) and (path.parent / f"{entry}.yaml").exists():
            base = _merged(base, _load(path.parent / f"{entry}.yaml"))
    return _merged(base, raw)


def read_experiment(path: Path) -> Experiment:
    """One experiment config -> its registry entry (raises RegistryError naming the file)."""
    text = path.read_text()
    raw = _load(path)
    name = raw.get("name")
    if name != path.stem:
        raise RegistryError(f"{path}: `name: {name}` must equal the file name `{path.stem}`")
    paper = path.parents[2].name
    if raw.get("paper") != paper:
        raise RegistryError(f"{path}: `paper: {raw.get('paper')}` must be its folder `{paper}`")
    arms = {}
    for arm, entry in (raw.get("arms") or {}).items():
        meta, overlay = _split(entry, ARM_META)
        if not meta.get("about"):
            raise RegistryError(f"{path}: arm {arm!r} has no one-line `about`")
        arms[str(arm)] = Arm(str(arm), str(meta["about"]), overlay)
    tiers = {}
    for tier, entry in (raw.get("tiers") or {}).items():
        if tier not in TIERS:
            raise RegistryError(f"{path}: tier {tier!r} is not one of {', '.join(TIERS)}")
        meta, overlay = _split(entry, TIER_META)
        if not meta.get("runtime"):
            raise RegistryError(f"{path}: tier {tier!r} has no `runtime`")
        tiers[tier] = TierSpec(tier, str(meta["runtime"]), tuple(meta.get("notes") or ()), overlay)
    missing = [t for t in TIERS if t not in tiers]
    if missing:
        raise RegistryError(
            f"{path}: tiers {missing} are not defined (every experiment has all three)"
        )
    if raw.get("arm") not in arms:
        raise RegistryError(f"{path}: default `arm: {raw.get('arm')}` is not among {sorted(arms)}")
    metrics = {str(k): str(v) for k, v in (raw.get("metrics") or {}).items()}
    if not metrics:
        raise RegistryError(f"{path}: no `metrics` (name: one-line meaning)")
    check = None
    if raw.get("learning_check"):
        lc = dict(raw["learning_check"])
        try:
            check = LearningCheck(
                arm=str(lc.get("arm", raw["arm"])),
                steps=int(lc["steps"]),
                evals=int(lc.get("evals", 4)),
                metric=str(lc["metric"]),
                higher_is_better=bool(lc.get("higher_is_better", True)),
                fall_back=float(lc.get("fall_back", 0.02)),
                overrides=tuple(str(o) for o in lc.get("overrides") or ()),
                why=str(lc.get("known_failure") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(f"{path}: learning_check needs steps and metric ({exc})") from exc
        if check.arm not in arms:
            raise RegistryError(f"{path}: learning_check names an unknown arm {check.arm!r}")
    return Experiment(
        name=name,
        paper=paper,
        path=path,
        default_arm=str(raw["arm"]),
        arms=arms,
        tiers=tiers,
        metrics=metrics,
        header=_header(text),
        learning_check=check,
        seed_batching=raw.get("seed_batching") is True,
    )


def experiment_files(root: Path = EXPERIMENTS_DIR) -> list[Path]:
    return sorted(root.glob("*/conf/experiment/*.yaml"))


@functools.cache
def experiments(root: Path = EXPERIMENTS_DIR) -> dict[str, Experiment]:
    """Every registered experiment by name, sorted by paper then name."""
    found: dict[str, Experiment] = {}
    for path in experiment_files(root):
        exp = read_experiment(path)
        if exp.name in found:
            raise RegistryError(
                f"experiment {exp.name!r} is defined twice: {found[exp.name].path} and {path}"
            )
        found[exp.name] = exp
    return dict(sorted(found.items(), key=lambda kv: (kv[1].paper, kv[0])))


def get(name: str) -> Experiment:
    exps = experiments()
    if name not in exps:
        raise RegistryError(
            f"no experiment {name!r}; choose one of {', '.join(exps)} "
            "(`python -m shortsci_bench.registry` lists them)"
        )
    return exps[name]


def paper_conf_dirs(root: Path = EXPERIMENTS_DIR) -> list[Path]:
    """The papers' `conf/` folders, which Hydra searches after `conf/`."""
    return sorted(p for p in root.glob("*/conf") if p.is_dir())


def searchpath() -> list[str]:
    return [f"file://{p}" for p in paper_conf_dirs()]


def help_text() -> str:
    """`python -m shortsci_bench --help`: how to run, then every experiment with its paper,
    arms (default first) and tiers with their expected runtimes."""
    lines = [
        "shortsci_bench: runnable, checkable reproductions of paper summaries.",
        "",
        "  python -m shortsci_bench +experiment=NAME [tier=smoke|quick|paper] [arm=ARM] [seed=N]",
        "  python -m shortsci_bench -m +experiment=NAME +sweep=claims tier=quick   # every arm x 3 seeds",
        "  python -m shortsci_bench.collect                                       # verdicts",
        "",
        "== Experiments (registry: python -m shortsci_bench.registry) ==",
    ]
    for name, exp in experiments().items():
        arms = [exp.default_arm, *(a for a in exp.arms if a != exp.default_arm)]
        lines.append(f"{name}  [experiments/{exp.paper}/]  arms: {', '.join(arms)}")
        for tier in exp.tiers.values():
            lines.append(f"    {tier.name}: {tier.runtime}")
    lines += [
        "",
        "A setting changed on the command line makes the run a variant (tier~custom-<hash>),",
        "judged apart from the tier. `--cfg job` prints the composed config.",
        "",
        "== Config groups ==",
        "$APP_CONFIG_GROUPS",
    ]
    return "\n".join(lines)


def main() -> int:
    """`python -m shortsci_bench.registry`: every experiment with its paper, arms and tiers."""
    for name, exp in experiments().items():
        print(f"{name}  (paper: {exp.paper}, experiments/{exp.paper}/)")
        for arm in exp.arms.values():
            mark = "*" if arm.name == exp.default_arm else " "
            print(f"  {mark} arm {arm.name}: {arm.about}")
        for tier in exp.tiers.values():
            print(f"    tier {tier.name}: {tier.runtime}")
    print(
        "\n* default arm. Run: python -m shortsci_bench +experiment=NAME arm=ARM tier=TIER seed=N"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
