"""Golden output of the collector: a fixed set of constructed records and claims, one for
each verdict rule and each special case (tiers, stubs, preconditions, failed runs, seed
plans, outliers, variants), judged and rendered as JSON, must equal
tests/golden/collect.json to the letter.

A change to a verdict rule or its wording shows here as a diff. When the change is meant,
regenerate with `SHORTSCI_GOLDEN_UPDATE=1 python -m pytest tests/test_collect_golden.py`
and review the diff of the golden file in the commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from shortsci_bench.collect import collect
from shortsci_bench.collect.synthetic import claim, make_record, write_claims, write_run
from shortsci_bench.collect.tables import to_json

GOLDEN = Path(__file__).parent / "golden" / "collect.json"
EXP = "golden_exp"


def _records(runs: Path) -> None:
    def add(arm, tier, values, metric="test/acc", **kw):
        for seed, v in enumerate(values):
            write_run(runs, make_record(EXP, arm, tier, seed, {metric: v, "m": v / 10}, **kw))

    add("a", "paper", [0.91, 0.90, 0.905])
    add("b", "paper", [0.85, 0.86, 0.84])
    add("c", "paper", [0.89, 0.93, 0.86])  # straddles a (undecided ordering)
    add("a", "quick", [0.80, 0.82, 0.81])  # a lower tier: indicative
    add("b", "quick", [0.70, 0.72, 0.71])
    add("d", "paper", [0.5])  # one seed: no interval
    add("s", "paper", [0.9, 0.9, 0.9], stub=True)  # stub data
    write_run(runs, make_record(EXP, "e", "paper", 0, {}, status="failed"))
    write_run(runs, make_record(EXP, "e", "paper", 1, {"test/acc": 0.1}, status="diverged"))
    add("f", "paper", [0.90, 0.91, 0.90, 0.20, 0.21])  # seeds 3, 4 beyond a 3-seed plan
    add("g", "paper", [0.90, 0.905])
    write_run(runs, make_record(EXP, "g", "paper", 2, {}, status="diverged"))  # a planned seed
    add("h", "paper", [0.030, 0.554, 0.039])  # one seed did not take off
    add("q", "quick", [0.5, 0.51, 0.5])  # quick runs only, of a paper-only claim: indicative
    variant = make_record(EXP, "a", "paper", 0, {"test/acc": 0.1}, config={"lr": 9})
    write_run(runs, variant.model_copy(update={"variant": "custom-0000abcd"}))


def _claims() -> list[dict]:
    on = {"experiment": EXP, "metric": "test/acc"}
    return [
        claim("value_in", "value", **on, arm="a", target=0.905, tolerance=0.05),
        claim("value_out", "value", **on, arm="b", target=0.95, tolerance=0.01),
        claim("value_straddle", "value", **on, arm="c", target=0.90, tolerance=0.005),
        claim("value_binomial", "value", **on, arm="a", target=0.90, n_eval=10000),
        claim("value_one_seed", "value", **on, arm="d", target=0.5, tolerance=0.1),
        claim(
            "order_yes",
            "ordering",
            **on,
            better={"arm": "a"},
            worse={"arm": "b"},
            tiers=["quick", "paper"],
            any_scale="a synthetic claim that holds at any scale",
        ),
        claim("order_no", "ordering", **on, better={"arm": "b"}, worse={"arm": "a"}),
        claim("order_undecided", "ordering", **on, better={"arm": "a"}, worse={"arm": "c"}),
        claim(
            "order_quick_only",
            "ordering",
            **on,
            better={"arm": "a"},
            worse={"arm": "b"},
            tiers=["quick"],
            any_scale="a synthetic claim that holds at any scale",
        ),
        claim("prop_yes", "property", experiment=EXP, metric="m", arm="a", op="<", threshold=0.1),
        claim("prop_no", "property", experiment=EXP, metric="m", arm="a", op=">", threshold=0.1),
        claim(
            "order_unmet_precondition",
            "ordering",
            **on,
            better={"arm": "a"},
            worse={"arm": "b"},
            requires=[
                {
                    "arm": "b",
                    "metric": "test/acc",
                    "op": ">",
                    "threshold": 0.95,
                    "why": "b learns at all",
                }
            ],
        ),
        claim("stub_value", "value", **on, arm="s", target=0.9, tolerance=0.05),
        claim("failed_only", "value", **on, arm="e", target=0.1, tolerance=0.05),
        claim("not_run", "value", **on, arm="zz", target=0.5, tolerance=0.1),
        claim("skipped", "value", status="not_attempted", reason="needs ImageNet"),
        claim("unclear", "value", status="not_checkable", reason="the quote states no outcome"),
        claim("beyond_plan", "value", **on, arm="f", target=0.905, tolerance=0.05),
        claim("failed_planned_seed", "value", **on, arm="g", target=0.9, tolerance=0.05),
        claim("outlier", "property", **on, arm="h", op="<", threshold=2.0),
        claim(
            "sequential",
            "ordering",
            **on,
            better={"arm": "a"},
            worse={"arm": "c"},
            stats={"looks": [3, 5], "boundary": "obrien_fleming"},
        ),
        claim("paper_only_quick_runs", "value", **on, arm="q", target=0.5, tolerance=0.1),
    ]


def test_collector_output_is_the_golden_one(tmp_path):
    runs, exps = tmp_path / "runs", tmp_path / "experiments"
    _records(runs)
    write_claims(exps, "golden_paper", _claims(), experiments=[EXP])
    collection = collect([runs], exps)
    assert collection.warnings == []
    text = to_json(collection).replace(str(tmp_path), "<tmp>")
    output = json.loads(text)
    if os.environ.get("SHORTSCI_GOLDEN_UPDATE"):
        GOLDEN.write_text(json.dumps(output, indent=1, sort_keys=True) + "\n")
    expected = json.loads(GOLDEN.read_text())
    assert output == expected, "collector output changed: see the module docstring"
