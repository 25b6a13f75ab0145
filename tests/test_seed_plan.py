"""Pre-registered seed plans: the rate of false "reproduced" under a null effect stays at
the nominal one-sided 2.5% for fixed and group-sequential plans, for Gaussian seeds and for
bimodal ones (a seed that does not take off), within Monte Carlo error; while optional
stopping without a boundary (look at 3, add seeds, look at 5) exceeds it."""

from __future__ import annotations

import math
import random

import pytest

from shortsci_bench.claims.schema import OrderingClaim
from shortsci_bench.collect.verdicts import decide_paired, look_confidence, outlying

REPS = 4000
NOMINAL = 0.025
LIMIT = NOMINAL + 3 * math.sqrt(NOMINAL * (1 - NOMINAL) / REPS)  # 3 Monte Carlo errors


def _claim(stats: dict) -> OrderingClaim:
    return OrderingClaim.model_validate(
        dict(id="x", kind="ordering", statement="s", quote="q", source={"file": "f", "line": 1},
             experiment="e", metric="m", better={"arm": "a"}, worse={"arm": "b"}, stats=stats)
    )  # fmt: skip


def _gauss(rng: random.Random) -> float:
    return rng.gauss(0.0, 1.0)


def _bimodal(rng: random.Random) -> float:
    """Both arms alike: each seed takes off (about 1) with probability 0.8, else stays near 0."""

    def arm() -> float:
        return rng.gauss(1.0, 0.05) if rng.random() < 0.8 else rng.gauss(0.0, 0.05)

    return arm() - arm()


def false_reproduced(stats: dict, draw, reps: int = REPS, seed: int = 0) -> float:
    """Run the plan look by look, stopping at the first decision, under no effect."""
    rng, claim = random.Random(seed), _claim(stats)
    plan = claim.stats.plan()
    hits = 0
    for _ in range(reps):
        d = [draw(rng) for _ in range(plan[-1])]
        for n in plan:
            outcome = decide_paired(claim, {i: d[i] for i in range(n)}).outcome
            if outcome != "inconclusive":
                hits += outcome == "reproduced"
                break
    return hits / reps


@pytest.mark.parametrize(
    "stats",
    [{"min_seeds": 3}, {"looks": [3, 5, 10], "boundary": "pocock"},
     {"looks": [3, 5, 10], "boundary": "obrien_fleming"}],
    ids=["fixed3", "pocock", "obrien_fleming"],
)  # fmt: skip
@pytest.mark.parametrize("draw", [_gauss, _bimodal], ids=["gaussian", "bimodal"])
def test_false_reproduced_rate_stays_nominal(stats, draw):
    assert false_reproduced(stats, draw) <= LIMIT


def test_optional_stopping_without_a_boundary_is_what_the_plan_prevents():
    """Looking at 3 seeds, then at 5 with the full 95% each time: the rate the issue
    measured (about 4%); the check above would catch a plan that did this."""
    rng, fixed = random.Random(1), _claim({"min_seeds": 3})
    five = _claim({"min_seeds": 5})
    hits = 0
    for _ in range(REPS):
        d = {i: rng.gauss(0.0, 1.0) for i in range(5)}
        first = decide_paired(fixed, {i: d[i] for i in range(3)}).outcome
        if first == "inconclusive":
            first = decide_paired(five, d).outcome
        hits += first == "reproduced"
    assert hits / REPS > LIMIT


def test_boundaries_are_stricter_at_early_looks():
    pocock = _claim({"looks": [3, 5, 10], "boundary": "pocock"}).stats
    obf = _claim({"looks": [3, 5, 10], "boundary": "obrien_fleming"}).stats
    assert look_confidence(pocock, 0) == look_confidence(pocock, 2) > 0.95
    assert look_confidence(obf, 0) > look_confidence(obf, 1) > look_confidence(obf, 2) > 0.95


def test_seeds_beyond_the_plan_never_decide():
    claim = _claim({"min_seeds": 3})
    d = {0: 0.1, 1: -0.2, 2: 0.05, 3: 5.0, 4: 5.1, 5: 4.9}
    decision = decide_paired(claim, d)
    assert decision.seeds == (0, 1, 2) and decision.outcome == "inconclusive"
    assert "seeds [3, 4, 5] beyond the look" in decision.note


def test_an_outlying_seed_is_flagged():
    assert outlying([0.030, 0.554, 0.039])  # fast weights seed 1 did not take off
    assert not outlying([0.030, 0.041, 0.039]) and not outlying([0.1, 0.11, 0.11])
