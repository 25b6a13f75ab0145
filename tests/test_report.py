"""The HTML report: index, experiment pages with embedded learning curves, labels."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil

import pytest

from shortsci_bench.collect.__main__ import main
from shortsci_bench.collect.synthetic import claim, make_record, write_claims, write_run
from shortsci_bench.report.browser import find_chromium, measure, screenshot
from shortsci_bench.report.curves import arm_curve

pytest.importorskip("matplotlib")

EXP = "curves_exp"
JPEG = "data: full CIFAR-10 decoded from JPEG quality 75 (lossy: MAE 3-9/255 per pixel)"


def history(final: float, steps: int = 5) -> list[dict[str, float]]:
    return [{"step": 10.0 * k, "val/acc": final * k / (steps - 1)} for k in range(steps)]


@pytest.fixture
def report_inputs(tmp_path):
    runs, exps = tmp_path / "runs", tmp_path / "experiments"
    for seed, (a, b) in enumerate([(0.95, 0.90), (0.96, 0.905), (0.955, 0.899)]):
        for arm, acc in (("a", a), ("b", b)):
            rec = make_record(
                EXP, arm, "quick", seed, {"test/acc": acc}, history=history(acc), notes=[JPEG]
            )
            write_run(runs, rec)
    for seed in range(3):
        rec = make_record(
            "stub_exp", "t", "paper", seed, {"test/per": 0.3}, stub=True, history=history(0.3)
        )
        write_run(runs, rec)
    write_claims(
        exps,
        "curve_paper",
        [
            claim(
                "a_beats_b",
                "ordering",
                experiment=EXP,
                metric="test/acc",
                better={"arm": "a"},
                worse={"arm": "b"},
                tiers=["quick", "paper"],
                any_scale="a synthetic claim",
            ),
            claim(
                "a_value",
                "value",
                experiment=EXP,
                metric="test/acc",
                arm="a",
                target=0.99,
                tolerance=0.001,
            ),  # judged at paper only: indicative
            claim("out_of_scope", "value", status="not_attempted", reason="needs ImageNet"),
        ],
        experiments=[EXP],
        title="Curves & <Things>",
    )
    write_claims(
        exps,
        "stub_paper",
        [
            claim(
                "per",
                "value",
                experiment="stub_exp",
                metric="test/per",
                arm="t",
                target=0.3,
                tolerance=0.05,
            )
        ],
        experiments=["stub_exp"],
    )
    return runs, exps, tmp_path / "report"


def test_html_report_from_cli(report_inputs):
    runs, exps, out = report_inputs
    assert (
        main(
            [
                "--runs",
                str(runs),
                "--experiments-dir",
                str(exps),
                "--format",
                "html",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    index = (out / "index.html").read_text()
    # Every paper and claim, with verdicts coloured and evidence.
    assert "Curves &amp; &lt;Things&gt;" in index  # titles escaped
    for claim_id in ("a_beats_b", "a_value", "out_of_scope", "per"):
        assert f">{claim_id}<" in index or f"; {claim_id}<" in index
    assert re.search(r"class='badge' style='background:#1a7f37'>reproduced<", index)
    assert ">indicative<" in index and ">not_attempted<" in index
    assert "needs ImageNet" in index
    assert "quick (scaled down)" in index
    assert "paper (stub data)" in index
    assert "experiment-curves_exp.html" in index

    page = (out / "experiment-curves_exp.html").read_text()
    imgs = re.findall(r"<img [^>]*src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert imgs, "experiment page has no embedded learning curve"
    assert base64.b64decode(imgs[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "scaled down" in page
    # Final metrics table comes from the records: mean of a's test/acc = 0.955.
    assert "<td>a</td>" in page and "<td>0.955</td>" in page
    # the lossy data source is named once, with the arms and tier whose records say so
    assert page.count("decoded from JPEG quality 75 (lossy") == 1
    assert "<b>quick</b> (a, b): <span class='stub'>data: full CIFAR-10" in page
    stub_page = (out / "experiment-stub_exp.html").read_text()
    assert "STUB DATA" in stub_page and "<img " in stub_page

    payload = json.loads((out / "claims.json").read_text())
    by_id = {c["claim"]: c for c in payload["claims"]}
    assert by_id["a_beats_b"]["verdict"]["verdict"] == "reproduced"
    assert by_id["a_value"]["verdict"]["verdict"] == "indicative"
    assert by_id["per"]["verdict"]["verdict"] == "not_attempted"
    assert (out / "claims.csv").read_text().count("\n") == 1 + 4


def test_report_without_any_runs(tmp_path):
    exps = tmp_path / "experiments"
    write_claims(
        exps,
        "lonely",
        [claim("x", "value", experiment=EXP, metric="m", arm="a", target=1.0, tolerance=0.1)],
    )
    assert (
        main(
            [
                "--runs",
                str(tmp_path / "none"),
                "--experiments-dir",
                str(exps),
                "--format",
                "html",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    index = (tmp_path / "r" / "index.html").read_text()
    assert ">not_run<" in index and "0 distinct run records" in index


def test_arm_curve_mean_and_band():
    recs = [
        make_record(
            EXP, "a", "quick", 0, {}, history=[{"step": 0, "m": 1.0}, {"step": 5, "m": 3.0}]
        ),
        make_record(
            EXP, "a", "quick", 1, {}, history=[{"step": 0, "m": 2.0}, {"step": 5, "m": 5.0}]
        ),
        make_record(EXP, "a", "quick", 2, {}, history=[{"step": 0, "m": 3.0}]),  # stopped early
    ]
    c = arm_curve("a", recs, "m")
    assert c.x == [0.0, 5.0]
    assert c.mean == [2.0, 4.0]
    assert (c.low, c.high) == ([1.0, 3.0], [3.0, 5.0])
    assert c.n_seeds == 3
    assert arm_curve("a", recs, "missing") is None


def _html(runs, exps, out) -> str:
    args = ["--runs", *map(str, runs), "--experiments-dir", str(exps)]
    assert main([*args, "--format", "html", "--out", str(out)]) == 0
    return (out / "index.html").read_text()


def test_index_leads_with_findings(report_inputs):
    runs, exps, out = report_inputs
    index = _html([runs], exps, out)
    # Summary (counts by verdict and tier, then the forest plot) before any paper.
    summary = index.index("<h2>Summary</h2>")
    findings = index.index("<h2>Papers with verdicts")
    assert summary < index.index("class='summary'") < findings
    forest = re.search(r"<img alt='forest plot of (\d+) judged claims' src='data:image/png", index)
    assert forest and int(forest.group(1)) == 1  # a_beats_b: the only judged claim with seeds
    assert summary < forest.start() < findings
    # The paper with a verdict comes before the one that was only run on stub data.
    assert index.index("id='curve_paper'") < index.index("id='stub_paper'")
    # Each claim shows its verbatim quote and source, not only our restatement.
    assert "&ldquo;quote for a_beats_b&rdquo;" in index and "000_synthetic.txt:1" in index


def test_a_published_copy_of_a_run_counts_once(report_inputs, tmp_path):
    runs, exps, out = report_inputs
    once = _html([runs], exps, out)
    n = int(re.search(r"from (\d+) distinct run records", once).group(1))
    assert n == 9
    copy = tmp_path / "published"
    shutil.copytree(runs, copy)  # the same records, as `--publish` would copy them
    twice = _html([runs, copy], exps, tmp_path / "report2")
    assert f"from {n} distinct run records" in twice
    page = (tmp_path / "report2" / "experiment-curves_exp.html").read_text()
    assert "3 completed" in page and "6 completed" not in page


@pytest.mark.skipif(
    find_chromium() is None and not os.environ.get("CI"),
    reason="no Chromium here (CI installs it: apt-get install chromium)",
)
def test_report_pages_fit_1280_px_in_chromium(report_inputs, tmp_path):
    """Looked at in a real browser: no page scrolls sideways at 1280 px, every image is
    embedded and shows, and a screenshot is taken. Long words and long rules are the usual
    cause of overflow, so one claim carries both."""
    runs, exps, out = report_inputs
    long = "x" * 300
    write_claims(
        exps,
        "long_paper",
        [
            claim(
                "long_words",
                "ordering",
                experiment=EXP,
                metric="test/acc",
                better={"arm": "a"},
                worse={"arm": "b"},
                tiers=["quick"],
                any_scale="a synthetic claim " + long,
                statement="a statement with an unbroken word " + long,
                quote="a quote " + long,
            )
        ],
        experiments=[EXP],
    )
    _html([runs], exps, out)
    for page in ("index.html", "experiment-curves_exp.html", "experiment-stub_exp.html"):
        m = measure(out / page, width=1280)
        assert not m.overflows, f"{page} is {m.scroll_width} px wide at {m.client_width}"
        assert m.external == 0 and m.images >= 1, (page, m)
    png = screenshot(out / "index.html", tmp_path / "index.png", width=1280, height=900)
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(head[16:20], "big") == 1280  # IHDR width
