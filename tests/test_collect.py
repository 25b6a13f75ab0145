"""The collector: verdict rules on constructed run records and small claims files,
corrupt records, stub data, tier choice, publishing, the CLI and the README table."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from shortsci_bench.collect import collect, published_dirs
from shortsci_bench.collect import readme as readme_mod
from shortsci_bench.collect.__main__ import main
from shortsci_bench.collect.publish import publish
from shortsci_bench.collect.synthetic import claim, make_record, write_claims, write_run
from shortsci_bench.collect.verdicts import STUB_REASON

REPO = Path(__file__).resolve().parents[1]
EXP = "toy_exp"


@pytest.fixture
def dirs(tmp_path):
    """(runs dir, experiments dir) in a fresh temp folder."""
    runs, exps = tmp_path / "runs", tmp_path / "experiments"
    runs.mkdir()
    exps.mkdir()
    return runs, exps


def add_runs(runs: Path, arm: str, metric: str, values, *, tier="paper", seeds=None, **kw) -> None:
    for i, v in enumerate(values):
        seed = seeds[i] if seeds is not None else i
        write_run(runs, make_record(EXP, arm, tier, seed, {metric: v}, **kw))


def one(runs: Path, exps: Path, claims: list[dict], **paper_kw):
    """Write one paper with `claims`, collect, and return the results keyed by claim id."""
    write_claims(exps, "toy_paper", claims, experiments=[EXP], **paper_kw)
    result = collect([runs], exps)
    assert result.warnings == []
    return {r.claim: r for r in result.results}


def value_claim(**kw):
    fields = dict(experiment=EXP, metric="test/acc", arm="a", target=0.9, tolerance=0.02)
    fields.update(kw)
    return claim("val", "value", **fields)


def ordering_claim(**kw):
    fields = dict(experiment=EXP, metric="test/acc", better={"arm": "a"}, worse={"arm": "b"})
    fields.update(kw)
    return claim("order", "ordering", **fields)


def property_claim(**kw):
    fields = dict(experiment=EXP, metric="m", arm="a", op="<", threshold=1.0)
    fields.update(kw)
    return claim("prop", "property", **fields)


# --- value claims ----------------------------------------------------------------------


def test_value_inside_tolerance_is_reproduced(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.899, 0.901, 0.900, 0.902, 0.898])
    v = one(runs, exps, [value_claim()])["val"].verdict
    assert v.verdict == "reproduced"
    # the plan (3 seeds) decides; seeds 3 and 4 are shown, not used
    assert (v.tier, v.n, v.seeds) == ("paper", 3, [0, 1, 2])
    assert "seeds [3, 4] beyond the look" in v.why
    assert v.estimate == pytest.approx(0.9)
    assert 0.88 <= v.ci_low < v.estimate < v.ci_high <= 0.92
    assert "0.9 ± 0.02" in v.rule and "lies within" in v.why


def test_value_outside_tolerance_is_not_reproduced(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.80, 0.81, 0.79])
    v = one(runs, exps, [value_claim()])["val"].verdict
    assert v.verdict == "not_reproduced"
    assert v.gap == pytest.approx(-0.1)
    assert v.ci_high < 0.88


def test_value_straddling_the_band_is_inconclusive(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.87, 0.93, 0.90])
    v = one(runs, exps, [value_claim()])["val"].verdict
    assert v.verdict == "inconclusive"
    assert "straddles" in v.why
    assert v.ci_low < 0.88 and v.ci_high > 0.92


def test_value_default_tolerance_is_binomial_noise(dirs):
    runs, exps = dirs
    tol = 2 * math.sqrt(0.084 * 0.916 / 10_000)  # ~0.00555
    add_runs(runs, "a", "test/err", [0.0860, 0.0865, 0.0862])  # within 0.084 + tol
    add_runs(runs, "b", "test/err", [0.0905, 0.0910, 0.0908])  # beyond it
    c = dict(metric="test/err", target=0.084, tolerance=None, n_eval=10_000)
    res = one(runs, exps, [value_claim(**c), value_claim(**{**c, "arm": "b", "id": "val_b"})])
    assert res["val"].verdict.verdict == "reproduced"
    assert res["val_b"].verdict.verdict == "not_reproduced"
    assert f"{tol:.4g}" in res["val"].verdict.target
    assert "binomial" in res["val"].verdict.rule


def test_value_before_the_first_planned_look_is_underpowered(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.9])
    v = one(runs, exps, [value_claim(stats={"min_seeds": 2})])["val"].verdict
    assert v.verdict == "inconclusive"
    assert (v.n, v.estimate, v.ci_low, v.ci_high) == (0, None, None, None)
    assert "seeds 0 to 1 of the first planned look have not all finished (1 have)" in v.why


# --- ordering claims -------------------------------------------------------------------


def test_ordering_paired_by_seed_is_reproduced(dirs):
    runs, exps = dirs
    # A large seed effect shared by both arms: unpaired means overlap, paired differences
    # (a - b = 0.01 +- 0.001) clearly do not.
    seed_effect = [0.00, 0.05, -0.04, 0.03, -0.02]
    noise = [0.0005, -0.0008, 0.001, 0.0, -0.0003]
    add_runs(runs, "a", "test/acc", [0.91 + s + e for s, e in zip(seed_effect, noise)])
    add_runs(runs, "b", "test/acc", [0.90 + s for s in seed_effect])
    v = one(runs, exps, [ordering_claim(stats={"min_seeds": 5})])["order"].verdict
    assert v.verdict == "reproduced"
    assert v.n == 5 and v.seeds == [0, 1, 2, 3, 4]
    assert v.estimate == pytest.approx(0.01 + sum(noise) / 5)
    assert v.ci_low > 0
    assert v.counts == {
        "a": {"completed": 5, "diverged": 0, "failed": 0, "interrupted": 0},
        "b": {"completed": 5, "diverged": 0, "failed": 0, "interrupted": 0},
    }


def test_ordering_contradicted_is_not_reproduced(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.80, 0.81, 0.79, 0.80])
    add_runs(runs, "b", "test/acc", [0.90, 0.91, 0.89, 0.905])
    v = one(runs, exps, [ordering_claim()])["order"].verdict
    assert v.verdict == "not_reproduced"
    assert v.ci_high < 0


def test_ordering_underpowered(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.95, 0.96])
    add_runs(runs, "b", "test/acc", [0.80, 0.81])
    v = one(runs, exps, [ordering_claim()])["order"].verdict
    assert v.verdict == "inconclusive"
    assert v.why.startswith("underpowered: seeds 0 to 2 of the first planned look")


def test_ordering_straddling_names_the_next_planned_look_not_a_post_hoc_count(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.91, 0.89, 0.93])
    add_runs(runs, "b", "test/acc", [0.90, 0.90, 0.90])
    v = one(runs, exps, [ordering_claim()])["order"].verdict
    assert v.verdict == "inconclusive"
    assert v.n_needed is None and "paired seeds would" not in v.why
    assert "the plan's last look (3 seeds)" in v.why
    sequential = {"looks": [3, 5], "boundary": "pocock"}
    v = one(runs, exps, [ordering_claim(stats=sequential)])["order"].verdict
    assert v.verdict == "inconclusive" and "next planned look: 5 seeds" in v.why


def test_ordering_lower_is_better_and_margin(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "test/err", [0.070, 0.071, 0.072])
    add_runs(runs, "b", "test/err", [0.080, 0.081, 0.082])
    base = dict(metric="test/err", higher_is_better=False)
    res = one(
        runs,
        exps,
        [
            ordering_claim(**base),
            ordering_claim(**base, id="with_margin", margin=0.02),
            ordering_claim(**base, id="reversed", better={"arm": "b"}, worse={"arm": "a"}),
        ],
    )
    assert res["order"].verdict.verdict == "reproduced"
    assert res["order"].verdict.estimate == pytest.approx(0.01)
    assert res["with_margin"].verdict.verdict == "not_reproduced"  # 0.01 gap < 0.02 margin
    assert res["with_margin"].verdict.gap == pytest.approx(-0.01)
    assert res["reversed"].verdict.verdict == "not_reproduced"


def test_ordering_leaves_unpaired_seeds_out(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.95, 0.96, 0.95, 0.0, 0.0], seeds=[0, 1, 2, 7, 8])
    add_runs(runs, "b", "test/acc", [0.90, 0.91, 0.90])
    v = one(runs, exps, [ordering_claim()])["order"].verdict
    assert v.verdict == "reproduced"
    assert v.seeds == [0, 1, 2]  # seeds 7 and 8 of arm a have no partner and are not planned


def test_ordering_with_per_side_metrics(dirs):
    runs, exps = dirs
    for seed, (stoch, det) in enumerate([(0.10, 0.12), (0.11, 0.125), (0.105, 0.121)]):
        m = {"test/err_stoch": stoch, "test/err_det": det}
        write_run(runs, make_record(EXP, "a", "paper", seed, m))
    c = ordering_claim(
        metric="test/err_stoch",
        better={"arm": "a", "metric": "test/err_stoch"},
        worse={"arm": "a", "metric": "test/err_det"},
        higher_is_better=False,
    )
    v = one(runs, exps, [c])["order"].verdict
    assert v.verdict == "reproduced"
    assert v.estimate == pytest.approx((0.02 + 0.015 + 0.016) / 3)


# --- property claims -------------------------------------------------------------------


def test_property_rules(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "m", [0.5, 0.6, 0.55])  # mean 0.55
    res = one(
        runs,
        exps,
        [
            property_claim(),  # < 1: satisfied
            property_claim(id="violated", op=">", threshold=1.0),
            property_claim(id="straddle", op="<", threshold=0.55),
        ],
    )
    assert res["prop"].verdict.verdict == "reproduced"
    assert res["prop"].verdict.gap == pytest.approx(-0.45)
    assert res["violated"].verdict.verdict == "not_reproduced"
    assert res["straddle"].verdict.verdict == "inconclusive"
    assert "straddles" in res["straddle"].verdict.why


def test_property_with_identical_seeds_is_degenerate_not_broken(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "hessian/n_negative_zero", [2.0, 2.0, 2.0])
    metric = "hessian/n_negative_zero"
    res = one(
        runs,
        exps,
        [
            property_claim(metric=metric, op=">=", threshold=1.0),
            property_claim(id="at_edge", metric=metric, op="<=", threshold=2.0),
            property_claim(id="strict_edge", metric=metric, op="<", threshold=2.0),
        ],
    )
    v = res["prop"].verdict
    assert v.verdict == "reproduced"
    assert (v.std, v.ci_low, v.ci_high) == (0.0, 2.0, 2.0)
    assert res["at_edge"].verdict.verdict == "reproduced"
    assert res["strict_edge"].verdict.verdict == "not_reproduced"


# --- status, stub, run status, tiers ---------------------------------------------------


def test_not_attempted_and_not_run(dirs):
    runs, exps = dirs
    na = claim("skipped", "ordering", status="not_attempted", reason="needs Atari")
    res = one(runs, exps, [value_claim(), na])
    assert res["val"].verdict.verdict == "not_run"
    assert "no runs of a" in res["val"].verdict.why
    assert res["skipped"].verdict.verdict == "not_attempted"
    assert res["skipped"].verdict.why == "needs Atari"


def test_paper_not_attempted_overrides_its_claims(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.9, 0.9, 0.9])
    res = one(runs, exps, [value_claim()], status="not_attempted", reason="ImageNet scale")
    assert res["val"].verdict.verdict == "not_attempted"
    assert "ImageNet scale" in res["val"].verdict.why


def test_stub_records_are_never_reproduced(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.90, 0.90, 0.901, 0.899], stub=True)
    v = one(runs, exps, [value_claim()])["val"].verdict
    assert v.verdict == "not_attempted"
    assert v.why.startswith(STUB_REASON)
    assert v.stub is True and v.n == 3  # the estimate is still shown


def test_stub_records_at_a_lower_tier_are_not_attempted_not_indicative(dirs):
    # e.g. transducer_timit smoke runs on the TIMIT stub, for a claim judged at paper tier
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.2, 0.3, 0.25], tier="smoke", stub=True)
    res = one(runs, exps, [value_claim()])["val"]
    assert res.verdict.verdict == "not_attempted"
    assert res.verdict.why.startswith(STUB_REASON)
    # a real run at paper tier is judged as usual, and the stub row stays not_attempted
    add_runs(runs, "a", "test/acc", [0.899, 0.901, 0.900])
    res = one(runs, exps, [value_claim()])["val"]
    assert res.verdict.verdict == "reproduced" and res.verdict.tier == "paper"
    assert [v.verdict for v in res.indicative] == ["not_attempted"]


def test_an_unmet_precondition_makes_a_decided_ordering_inconclusive(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.90, 0.91, 0.92])
    add_runs(runs, "b", "test/acc", [0.80, 0.80, 0.81])
    req = {"arm": "a", "metric": "probe/binds", "op": ">", "threshold": 0.5, "why": "a binds"}
    # untested: no run carries the metric
    v = one(runs, exps, [ordering_claim(requires=[req])])["order"].verdict
    assert v.verdict == "inconclusive" and v.why.startswith("precondition untested")
    assert "the rule alone: reproduced" in v.why
    # met: the verdict stands
    add_runs(runs, "c", "probe/binds", [0.8, 0.82, 0.81])
    req["arm"] = "c"
    assert (
        one(runs, exps, [ordering_claim(requires=[req])])["order"].verdict.verdict == "reproduced"
    )
    # not met: inconclusive, naming the precondition and its interval
    req["threshold"] = 0.9
    v = one(runs, exps, [ordering_claim(requires=[req])])["order"].verdict
    assert v.verdict == "inconclusive"
    assert v.why.startswith("precondition not met: a binds (c probe/binds > 0.9; mean 0.81")
    # a precondition never lifts an undecided verdict, and never touches one that held
    req["threshold"] = 0.5
    add_runs(runs, "b", "test/acc", [0.95, 0.85, 0.95], seeds=[0, 1, 2])
    v = one(runs, exps, [ordering_claim(requires=[req])])["order"].verdict
    assert v.verdict == "inconclusive" and "precondition" not in v.why


def test_only_completed_runs_count_but_others_are_shown(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.899, 0.901, 0.900])
    write_run(runs, make_record(EXP, "a", "paper", 10, {"test/acc": 0.1}, status="diverged"))
    write_run(runs, make_record(EXP, "a", "paper", 11, {}, status="failed"))
    write_run(runs, make_record(EXP, "a", "paper", 12, {"test/acc": 0.2}, status="interrupted"))
    v = one(runs, exps, [value_claim()])["val"].verdict
    assert v.verdict == "reproduced"
    assert v.n == 3 and 10 not in v.seeds and 12 not in v.seeds
    assert v.counts["a"] == {"completed": 3, "diverged": 1, "failed": 1, "interrupted": 1}
    assert "3 completed, 1 diverged, 1 failed, 1 interrupted" in v.counts_text


def test_only_failed_runs_is_inconclusive(dirs):
    runs, exps = dirs
    write_run(runs, make_record(EXP, "a", "paper", 0, {}, status="failed"))
    v = one(runs, exps, [value_claim()])["val"].verdict
    assert v.verdict == "inconclusive"
    assert "underpowered" in v.why and v.counts["a"]["failed"] == 1


def test_highest_judged_tier_decides_others_are_indicative(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.90, 0.901, 0.899], tier="paper")
    add_runs(runs, "a", "test/acc", [0.70, 0.71, 0.69], tier="quick")
    add_runs(runs, "a", "test/acc", [0.50, 0.51], tier="smoke")
    r = one(runs, exps, [value_claim(tiers=["quick", "paper"], any_scale="a test")])["val"]
    assert (r.verdict.tier, r.verdict.verdict) == ("paper", "reproduced")
    assert [(v.tier, v.verdict, v.judged) for v in r.indicative] == [
        ("quick", "indicative", False),
        ("smoke", "indicative", False),
    ]
    assert r.indicative[0].gap == pytest.approx(-0.2)
    assert "below the judged tier paper" in r.indicative[0].why
    assert "not judged at tier smoke" in r.indicative[1].why


def test_lower_judged_tier_used_when_paper_tier_missing(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.70, 0.71, 0.69], tier="quick")
    r = one(runs, exps, [value_claim(tiers=["quick", "paper"], any_scale="a test")])["val"]
    assert (r.verdict.tier, r.verdict.verdict) == ("quick", "not_reproduced")


def test_runs_only_at_unjudged_tier_are_indicative(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.80, 0.81, 0.79], tier="quick")
    v = one(runs, exps, [value_claim(tiers=["paper"])])["val"].verdict
    assert (v.verdict, v.tier, v.judged) == ("indicative", "quick", False)
    assert v.gap == pytest.approx(-0.1)
    assert v.estimate == pytest.approx(0.8) and v.ci_low is not None


# --- reading records -------------------------------------------------------------------


def test_corrupt_records_are_skipped_with_their_path(dirs, capsys):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.899, 0.901, 0.900])
    truncated = runs / "bad1" / "result.json"
    truncated.parent.mkdir()
    good = make_record(EXP, "a", "paper", 99, {"test/acc": 0.0}).model_dump_json()
    truncated.write_text(good[: len(good) // 2])
    wrong = runs / "bad2" / "result.json"
    wrong.parent.mkdir()
    wrong.write_text(json.dumps({"experiment": EXP, "arm": "a", "tier": "huge", "seed": "x"}))
    not_dict = runs / "bad3" / "result.json"
    not_dict.parent.mkdir()
    not_dict.write_text("[1, 2, 3]")

    write_claims(exps, "toy_paper", [value_claim()], experiments=[EXP])
    result = collect([runs], exps)
    assert len(result.records) == 3
    assert len(result.warnings) == 3
    for path in (truncated, wrong, not_dict):
        assert any(str(path) in w for w in result.warnings)
    assert result.results[0].verdict.verdict == "reproduced"

    assert main(["--runs", str(runs), "--experiments-dir", str(exps), "--format", "csv"]) == 0
    err = capsys.readouterr().err
    assert str(truncated) in err and str(wrong) in err and "warning:" in err


def test_published_copies_count_once_and_other_settings_never_replace(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.899, 0.901, 0.900])
    # Seed 0 re-run with changed settings, finishing later: another experiment, kept apart.
    newer = make_record(
        EXP,
        "a",
        "paper",
        0,
        {"test/acc": 0.5},
        config={"fix": 1},
        finished_at="2026-02-01T00:00:00+00:00",
    )
    write_run(runs, newer)
    write_claims(exps, "toy_paper", [value_claim()], experiments=[EXP])
    report = publish(collect([runs], exps).records, collect([runs], exps).papers, exps)
    assert len(report.written) == 4
    result = collect([runs, *published_dirs(exps)], exps)
    assert len(result.records) == 8  # every record read twice ...
    group = result.groups[(EXP, "a", "paper")]
    assert len(group.runs) == 4  # ... but copies collapse
    assert group.other_settings() == 1
    v = result.results[0].verdict
    assert v.n == 3
    assert v.estimate == pytest.approx((0.899 + 0.901 + 0.900) / 3)
    assert "1 record of other settings left out" in v.why


def test_aggregates_per_arm_tier_metric(dirs):
    runs, exps = dirs
    for seed, (acc, loss) in enumerate([(0.9, 0.3), (0.92, 0.2), (0.94, 0.1)]):
        write_run(runs, make_record(EXP, "a", "quick", seed, {"test/acc": acc, "train/loss": loss}))
    result = collect([runs], exps)
    aggs = {(a.arm, a.tier, a.metric): a for a in result.aggregates()}
    acc = aggs[("a", "quick", "test/acc")].summary
    assert (acc.n, acc.mean, acc.std) == (3, pytest.approx(0.92), pytest.approx(0.02))
    assert acc.ci_low == pytest.approx(0.92 - 4.302652729911275 * 0.02 / math.sqrt(3))


def test_experiment_filter(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.9, 0.9, 0.9])
    write_run(runs, make_record("other_exp", "x", "paper", 0, {"m": 1.0}))
    write_claims(exps, "toy_paper", [value_claim()], experiments=[EXP])
    write_claims(
        exps,
        "other_paper",
        [property_claim(experiment="other_exp", arm="x")],
        experiments=["other_exp"],
    )
    result = collect([runs], exps, experiment="other_exp")
    assert {lr.record.experiment for lr in result.records} == {"other_exp"}
    assert [r.paper for r in result.results] == ["other_paper"]


def test_invalid_claims_file_is_a_warning_not_a_crash(dirs):
    runs, exps = dirs
    write_claims(exps, "toy_paper", [value_claim()], experiments=[EXP])
    bad = exps / "broken" / "claims.yaml"
    bad.parent.mkdir()
    bad.write_text("paper: [unclosed\n")
    result = collect([runs], exps)
    assert [p.slug for p in result.papers] == ["toy_paper"]
    assert any("broken" in w for w in result.warnings)


# --- publishing ------------------------------------------------------------------------


def test_publish_copies_small_files_and_is_idempotent(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.9, 0.91, 0.92])
    write_run(runs, make_record(EXP, "a", "paper", 5, {}, status="failed"))
    write_run(runs, make_record(EXP, "a", "paper", 6, {"test/acc": 0.9}, git_dirty=True))
    run0 = next((runs / EXP / "a" / "paper").glob("seed0-*"))
    (run0 / "train.log").write_text("epoch 1\n")
    (run0 / "last.ckpt").write_bytes(b"\0" * 100)
    (run0 / ".lock").write_text("")
    (run0 / "checkpoints").mkdir()
    (run0 / "checkpoints" / "epoch=1.ckpt").write_bytes(b"\0" * 100)
    (run0 / ".hydra").mkdir()
    (run0 / ".hydra" / "config.yaml").write_text("arm: a\n")
    write_claims(exps, "toy_paper", [value_claim()], experiments=[EXP])
    write_claims(exps, "second_paper", [], experiments=[EXP])
    write_claims(exps, "unrelated", [], experiments=["elsewhere"])

    first = main(
        [
            "--runs",
            str(runs),
            "--experiments-dir",
            str(exps),
            "--publish",
            "--format",
            "json",
            "--out",
            str(exps.parent / "o1"),
        ]
    )
    assert first == 0
    dest0 = exps / "toy_paper" / "results" / EXP / "a" / "paper" / run0.name
    assert (dest0 / "result.json").read_bytes() == (run0 / "result.json").read_bytes()
    assert (dest0 / "train.log").exists() and (dest0 / ".hydra" / "config.yaml").exists()
    assert not (dest0 / "last.ckpt").exists() and not (dest0 / "checkpoints").exists()
    assert not (dest0 / ".lock").exists()
    for slug in ("toy_paper", "second_paper"):
        published = sorted((exps / slug / "results").rglob("result.json"))
        assert len(published) == 4  # the failed run is published too; the dirty one is not
        assert not list((exps / slug / "results").rglob("seed6-*"))
    assert not (exps / "unrelated" / "results").exists()

    before = {p: p.stat().st_mtime_ns for p in exps.rglob("*") if p.is_file()}
    collection = collect([runs], exps)
    again = publish(collection.records, collection.papers, exps)
    assert again.written == [] and len(again.unchanged) == 8
    after = {p: p.stat().st_mtime_ns for p in exps.rglob("*") if p.is_file()}
    assert after == before
    assert not list(exps.rglob("*.tmp")) and not list(exps.rglob("*.old"))

    # A changed record replaces its published copy.
    rec = make_record(
        EXP, "a", "paper", 0, {"test/acc": 0.5}, finished_at="2026-03-01T00:00:00+00:00"
    )
    write_run(runs, rec)
    collection = collect([runs], exps)
    third = publish(collection.records, collection.papers, exps)
    assert len(third.written) == 2
    assert json.loads((dest0 / "result.json").read_text())["metrics"]["test/acc"] == 0.5


# --- CLI outputs -----------------------------------------------------------------------


def test_cli_json_csv_and_table(dirs, capsys):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.899, 0.901, 0.900])
    write_claims(exps, "toy_paper", [value_claim()], experiments=[EXP])
    out = exps.parent / "out"
    base = ["--runs", str(runs), "--experiments-dir", str(exps)]
    assert main([*base, "--format", "json", "--out", str(out)]) == 0
    payload = json.loads((out / "claims.json").read_text())
    assert payload["claims"][0]["verdict"]["verdict"] == "reproduced"
    assert payload["claims"][0]["verdict"]["n"] == 3
    assert any(a["metric"] == "test/acc" and a["n"] == 3 for a in payload["aggregates"])

    assert main([*base, "--format", "csv", "--out", str(out)]) == 0
    lines = (out / "claims.csv").read_text().splitlines()
    assert lines[0].startswith("paper,claim,kind,experiment,tier")
    assert lines[1].startswith("toy_paper,val,value,toy_exp,paper,True,reproduced")

    capsys.readouterr()
    assert main([*base]) == 0
    out_text = capsys.readouterr().out
    assert "val" in out_text and "reproduced" in out_text


def imported_modules(importtime_stderr: str) -> set[str]:
    """Top-level package names from `python -X importtime` output."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def test_cli_runs_as_a_module_without_torch(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.9, 0.9, 0.9])
    write_claims(exps, "toy_paper", [value_claim()], experiments=[EXP])
    cmd = [sys.executable, "-X", "importtime", "-m", "shortsci_bench.collect"]
    cmd += ["--runs", str(runs), "--experiments-dir", str(exps), "--format", "json"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["claims"][0]["verdict"]["verdict"] == "reproduced"
    modules = imported_modules(out.stderr)
    assert "pydantic" in modules  # the parse works
    assert not modules & {"torch", "matplotlib", "scipy", "wandb", "lightning"}


def test_wandb_table_offline(dirs, monkeypatch, tmp_path):
    wandb = pytest.importorskip("wandb")
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.9, 0.9, 0.9])
    write_claims(exps, "toy_paper", [value_claim()], experiments=[EXP])
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    logged = {}
    real_table = wandb.Table

    def spy_table(*args, **kwargs):
        table = real_table(*args, **kwargs)
        logged.setdefault("tables", []).append(table)
        return table

    monkeypatch.setattr(wandb, "Table", spy_table)
    from shortsci_bench.collect.wandb_sync import push_verdicts

    push_verdicts(collect([runs], exps))
    verdicts = logged["tables"][0]
    assert "verdict" in verdicts.columns
    row = dict(zip(verdicts.columns, verdicts.data[0]))
    assert (row["claim"], row["verdict"], row["n"]) == ("val", "reproduced", 3)


# --- README table ----------------------------------------------------------------------


def test_readme_regeneration_and_check(dirs, capsys):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.899, 0.901, 0.900])
    write_claims(exps, "toy_paper", [value_claim()], experiments=[EXP])
    readme = exps.parent / "README.md"
    readme.write_text(f"# Title\n\n{readme_mod.START}\nold\n{readme_mod.END}\n\nafter\n")
    base = ["--experiments-dir", str(exps)]
    assert main([*base, "--check-readme", str(readme)]) == 1
    # Publish, then regenerate from the published records only (runs/ is ignored).
    assert main([*base, "--runs", str(runs), "--publish", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# Title\n") and text.endswith(f"{readme_mod.END}\n\nafter\n")
    assert "| toy_paper | val | paper | reproduced | 0.9 [" in text
    assert main([*base, "--check-readme", str(readme)]) == 0
    # A new published result makes the table stale.
    write_run(exps / "toy_paper" / "results", make_record(EXP, "a", "paper", 7, {"test/acc": 0.5}))
    assert main([*base, "--check-readme", str(readme)]) == 1
    assert "out of date" in capsys.readouterr().err


def test_readme_without_markers_is_an_error(dirs):
    _, exps = dirs
    readme = exps.parent / "README.md"
    readme.write_text("# no markers\n")
    assert main(["--experiments-dir", str(exps), "--check-readme", str(readme)]) == 2


def test_repository_readme_results_table_is_current():
    """Fails when README.md's results table no longer matches experiments/*/results/.
    Fix: python -m shortsci_bench.collect --readme README.md"""
    path = REPO / "README.md"
    text = path.read_text() if path.exists() else ""
    if readme_mod.START not in text or readme_mod.END not in text:
        pytest.skip("README.md has no results markers")
    published = collect(published_dirs(), None)
    assert readme_mod.is_current(path, published), (
        "README.md results table is out of date: run "
        "`python -m shortsci_bench.collect --readme README.md`"
    )


def test_wandb_not_imported_without_flag():
    code = "import sys, shortsci_bench.collect.__main__; print('wandb' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_record_search_ignores_layout_and_checkpoint_folders(tmp_path):
    from shortsci_bench.collect.records import find_record_paths

    deep = tmp_path / "any" / "layout" / "here"
    write_run(deep, make_record(EXP, "a", "smoke", 0, {"m": 1.0}))
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "result.json").write_text(make_record(EXP, "a", "smoke", 1, {}).model_dump_json())
    hidden = tmp_path / "flat" / "checkpoints"
    hidden.mkdir()
    (hidden / "result.json").write_text("{}")
    found = find_record_paths([tmp_path, flat, tmp_path / "missing"])
    assert len(found) == 2 and (flat / "result.json").resolve() in found
    assert find_record_paths([flat / "result.json"]) == [(flat / "result.json").resolve()]


def test_loading_restores_the_garbage_collector(dirs):
    import gc

    runs, exps = dirs
    add_runs(runs, "a", "m", [1.0])
    assert gc.isenabled()
    collect([runs], exps)
    assert gc.isenabled()


def test_default_runs_follow_the_trainer_setting(monkeypatch, tmp_path):
    from shortsci_bench.collect import default_runs

    monkeypatch.delenv("SHORTSCI_RUNS", raising=False)
    assert default_runs(tmp_path)[0] == Path("runs")
    monkeypatch.setenv("SHORTSCI_RUNS", str(tmp_path / "elsewhere"))
    (tmp_path / "paper" / "results").mkdir(parents=True)
    assert default_runs(tmp_path) == [tmp_path / "elsewhere", tmp_path / "paper" / "results"]


# --- verdicts that cannot be gamed ------------------------------------------------------


def test_a_planned_seed_that_diverged_counts_against_the_claim(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.90, 0.901, 0.899], seeds=[0, 2, 3])
    write_run(runs, make_record(EXP, "a", "paper", 1, {"test/acc": 0.1}, status="diverged"))
    v = one(runs, exps, [value_claim()])["val"].verdict
    assert v.verdict == "inconclusive" and v.seeds == [0, 2]
    assert "planned seed [1] of a diverged or failed: it counts against the claim" in v.why
    write_run(
        runs,
        make_record(
            EXP, "a", "paper", 2, {}, status="failed", finished_at="2027-01-01T00:00:00+00:00"
        ),
    )
    v = one(runs, exps, [value_claim()])["val"].verdict
    assert v.verdict == "not_reproduced" and "more than one fails the claim" in v.why


def test_a_variant_run_never_joins_the_tier(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.899, 0.901, 0.900])
    # seed 0 again with a changed setting, labelled a variant by the run path: kept apart
    variant = make_record(EXP, "a", "paper", 0, {"test/acc": 0.5}, config={"lr": 9})
    variant = variant.model_copy(update={"variant": "custom-1234abcd"})
    write_run(runs, variant)
    result = one(runs, exps, [value_claim()])
    v = result["val"].verdict
    assert v.verdict == "reproduced" and v.estimate == pytest.approx(0.9)
    groups = collect([runs], exps).groups
    assert (EXP, "a", "paper~custom-1234abcd") in groups


def test_smoke_never_judges_and_quick_needs_a_reason(dirs):
    from shortsci_bench.claims.schema import ClaimsError, load_paper

    _, exps = dirs
    path = write_claims(
        exps, "toy_paper", [value_claim(tiers=["smoke", "paper"])], experiments=[EXP]
    )
    with pytest.raises(ClaimsError, match="smoke never judges"):
        load_paper(path)
    path = write_claims(
        exps, "toy_paper", [value_claim(tiers=["quick", "paper"])], experiments=[EXP]
    )
    with pytest.raises(ClaimsError, match="any_scale"):
        load_paper(path)


def test_a_point_target_is_rejected_by_the_schema(dirs):
    from shortsci_bench.claims.schema import ClaimsError, load_paper

    _, exps = dirs
    path = write_claims(exps, "toy_paper", [value_claim(tolerance=None)], experiments=[EXP])
    with pytest.raises(ClaimsError, match="point target can never be reproduced"):
        load_paper(path)


def test_seeds_pooled_from_several_commits_are_named_and_strict_refuses(dirs):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.899, 0.901], git_commit="a" * 40)
    write_run(runs, make_record(EXP, "a", "paper", 2, {"test/acc": 0.900}, git_commit="b" * 40))
    v = one(runs, exps, [value_claim()])["val"].verdict
    assert v.verdict == "reproduced" and "seeds from 2 commits pooled" in v.why
    write_claims(exps, "toy_paper", [value_claim()], experiments=[EXP])
    strict = collect([runs], exps, strict=True).results[0].verdict
    assert strict.verdict == "inconclusive" and "--strict" in strict.why


def test_not_checkable_claims_say_why(dirs):
    runs, exps = dirs
    res = one(runs, exps, [value_claim(status="not_checkable", reason="the quote is a proposal")])
    assert (res["val"].verdict.verdict, res["val"].verdict.why) == (
        "not_checkable",
        "the quote is a proposal",
    )


def test_q_values_across_judged_tests_and_a_shared_test_counted_once(dirs):
    from shortsci_bench.collect.verdicts import benjamini_hochberg

    q = benjamini_hochberg({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    assert q == pytest.approx({"a": 0.04, "b": 0.04 * 4 / 3, "c": 0.04 * 4 / 3, "d": 0.5})
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.95, 0.96, 0.955])
    add_runs(runs, "b", "test/acc", [0.90, 0.91, 0.90])
    res = one(runs, exps, [ordering_claim(), ordering_claim(id="again", same_test_as="order")])
    first, again = res["order"].verdict, res["again"].verdict
    assert first.p_value is not None and 0 < first.p_value < 0.01
    assert first.q_value == pytest.approx(first.p_value)  # a family of one test
    assert again.q_value == first.q_value and again.same_test_as == "order"


def test_a_verdict_on_lossy_data_says_so_beside_the_tier(dirs):
    from shortsci_bench.collect.tables import tier_text

    runs, exps = dirs
    for seed, v in enumerate([0.899, 0.901, 0.900]):
        rec = make_record(EXP, "a", "paper", seed, {"test/acc": v})
        rec.provenance.data.update(lossy=True, source_description="JPEG quality 75 copy")
        write_run(runs, rec)
    v = one(runs, exps, [value_claim()])["val"].verdict
    assert v.data_notes == ["lossy data: JPEG quality 75 copy"]
    assert tier_text(v) == "paper (lossy data)"


def test_runs_only_leaves_the_published_records_out(dirs, monkeypatch, capsys):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.899, 0.901, 0.900])
    write_claims(exps, "toy_paper", [value_claim()], experiments=[EXP])
    published = exps / "toy_paper" / "results"
    add_runs(published, "b", "test/acc", [0.5, 0.5, 0.5])
    monkeypatch.setenv("SHORTSCI_RUNS", str(runs))
    args = ["--experiments-dir", str(exps), "--format", "json"]
    assert main([*args, "--runs-only"]) == 0
    only = json.loads(capsys.readouterr().out)
    assert {a["arm"] for a in only["aggregates"]} == {"a"}
    assert main(args) == 0
    both = json.loads(capsys.readouterr().out)
    assert {a["arm"] for a in both["aggregates"]} == {"a", "b"}


def test_terminal_view_is_one_line_per_claim_with_filters(dirs, capsys, monkeypatch):
    runs, exps = dirs
    add_runs(runs, "a", "test/acc", [0.899, 0.901, 0.900])
    long_id = "a_claim_with_a_very_long_identifier_that_would_wrap_in_a_narrow_terminal"
    claims = [
        value_claim(),
        value_claim(id=long_id, target=0.5),
        claim("skipped", "value", status="not_attempted", reason="needs ImageNet"),
    ]
    write_claims(exps, "toy_paper", claims, experiments=[EXP])
    monkeypatch.setenv("COLUMNS", "80")
    args = ["--runs", str(runs), "--experiments-dir", str(exps)]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert all(len(line) <= 80 for line in out)
    assert any(line.split()[0] == "val" and "reproduced" in line for line in out)
    assert "hidden: 1 not_attempted" in out[-1] and not any("skipped" in ln for ln in out)
    assert main([*args, "--verdict", "not_reproduced"]) == 0
    out = capsys.readouterr().out
    assert "a_claim_with" in out and " val " not in out
    assert main([*args, "--all"]) == 0
    assert "skipped" in capsys.readouterr().out


def test_wandb_failure_is_one_line_with_the_fix(dirs, monkeypatch, capsys):
    import shortsci_bench.collect.wandb_sync as ws

    def refuse(*args, **kwargs):
        raise RuntimeError("api_key not configured (no-tty)\nlong traceback follows")

    monkeypatch.setattr(ws, "push_verdicts", refuse)
    runs, exps = dirs
    write_claims(exps, "toy_paper", [value_claim()], experiments=[EXP])
    code = main(
        ["--runs", str(runs), "--experiments-dir", str(exps), "--wandb", "--format", "json"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "wandb login" in err and "long traceback" not in err
