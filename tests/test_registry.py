"""The registry: every experiment x arm x tier composes; smoke sizes instantiate; the
generated pages are current; claims name only experiments, arms and metrics that exist."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from shortsci_bench import docs, registry
from shortsci_bench.claims.schema import PaperClaims, load_all, registry_problems
from shortsci_bench.run import build_task
from tests.conftest import compose_cfg

CASES = [
    (name, arm, tier)
    for name, exp in registry.experiments().items()
    for arm in exp.arms
    for tier in registry.TIERS
]


def _overrides(name: str, arm: str, tier: str) -> list[str]:
    extra = ["dataset=timit_stub"] if name == "transducer_timit" else []
    return [f"+experiment={name}", f"arm={arm}", f"tier={tier}", *extra]


@pytest.mark.parametrize(("name", "arm", "tier"), CASES, ids=["/".join(c) for c in CASES])
def test_every_experiment_arm_and_tier_composes(name, arm, tier):
    cfg = compose_cfg(_overrides(name, arm, tier))
    resolved = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    assert resolved["name"] == name and resolved["tier"] == tier and resolved["arm"] == arm
    assert resolved["paper"] == registry.get(name).paper
    for block in ("dataset", "model", "task"):
        assert resolved[block]["_target_"], f"{name}/{arm}/{tier}: {block} has no _target_"


@pytest.mark.parametrize(
    ("name", "arm"),
    [(n, a) for n, e in registry.experiments().items() for a in e.arms],
)
def test_every_arm_instantiates_at_smoke_size(name, arm):
    cfg = compose_cfg(_overrides(name, arm, "smoke"))  # constructors read no data
    datamodule = instantiate(cfg.dataset)
    task = build_task(cfg)
    assert datamodule is not None and task.model is not None


def test_registry_lists_papers_by_folder():
    exps = registry.experiments()
    assert {"batchnorm_mnist", "swapout_cifar", "bnlstm_pmnist"} <= set(exps)
    swapout = exps["swapout_cifar"]
    assert swapout.paper == "swapout" and swapout.path.parent.parent.parent.name == "swapout"
    assert swapout.default_arm in swapout.arms and set(swapout.tiers) == set(registry.TIERS)
    # an inheriting experiment gets its parent's arms, tiers and metrics
    assert exps["bnlstm_pmnist"].arms.keys() == exps["bnlstm_seqmnist"].arms.keys()


def test_registry_refuses_an_experiment_without_metrics(tmp_path):
    path = tmp_path / "toy" / "conf" / "experiment" / "toy_x.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(
        "name: toy_x\npaper: toy\narm: a\narms: {a: {about: one}}\n"
        "tiers: {smoke: {runtime: s}, quick: {runtime: q}, paper: {runtime: p}}\n"
    )
    with pytest.raises(registry.RegistryError, match="no `metrics`"):
        registry.read_experiment(path)
    path.write_text(path.read_text() + "metrics: {m: meaning}\n")
    assert registry.read_experiment(path).metrics == {"m": "meaning"}
    path.write_text(path.read_text().replace("{a: {about: one}}", "{a: {}}"))
    with pytest.raises(registry.RegistryError, match="arm 'a' has no one-line `about`"):
        registry.read_experiment(path)


def test_generated_pages_are_current():
    assert docs.stale() == [], "run `python -m shortsci_bench.docs`"


def test_claims_name_registered_experiments_arms_and_metrics():
    problems = [p for paper in load_all() for p in registry_problems(paper)]
    assert problems == []


def test_a_misspelt_claim_field_is_named():
    paper = next(p for p in load_all() if p.slug == "batch_normalization")
    raw = paper.model_dump()
    claim = next(c for c in raw["claims"] if c["id"] == "bn_learns_faster")
    claim["better"]["arm"] = "bnn"
    claim["metric"] = "test/acc_maen"
    bad = PaperClaims.model_validate(raw)
    problems = registry_problems(bad)
    assert any(
        "bn_learns_faster', field arm: batchnorm_mnist has no arm 'bnn'" in p for p in problems
    )
    assert any("declares no metric 'test/acc_maen'" in p for p in problems)


def test_help_lists_every_experiment_with_arms_and_tiers():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "shortsci_bench", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    for name, exp in registry.experiments().items():
        assert name in out.stdout and exp.default_arm in out.stdout
    assert "== Config groups ==" in out.stdout and "dataset:" in out.stdout
