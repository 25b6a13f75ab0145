"""The catalogue: papers, summaries, claims and their latest published verdicts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from shortsci_bench.catalog import main
from shortsci_bench.collect.synthetic import claim, make_record, write_claims, write_run

EXP = "cat_exp"


@pytest.fixture
def exps(tmp_path):
    exps = tmp_path / "experiments"
    write_claims(
        exps,
        "alpha",
        [
            claim(
                "acc",
                "value",
                experiment=EXP,
                metric="test/acc",
                arm="a",
                target=0.9,
                tolerance=0.02,
            ),
            claim("skipped", "ordering", status="not_attempted", reason="RL environment"),
        ],
        experiments=[EXP],
        title="Alpha paper",
    )
    write_claims(
        exps, "beta", [], status="not_attempted", reason="ImageNet scale", title="Beta paper"
    )
    # Published results for alpha; an unpublished run in runs/ must not count.
    for seed, acc in enumerate([0.899, 0.901, 0.900]):
        write_run(
            exps / "alpha" / "results", make_record(EXP, "a", "paper", seed, {"test/acc": acc})
        )
    write_run(tmp_path / "runs", make_record(EXP, "a", "paper", 9, {"test/acc": 0.1}))
    return exps


def test_list_json(exps, capsys):
    assert main(["list", "--format", "json", "--experiments-dir", str(exps)]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["slug"] for e in entries] == ["alpha", "beta"]
    alpha, beta = entries
    assert alpha["title"] == "Alpha paper"
    assert alpha["summaries"][0]["ref"] == "000_synthetic.txt:1"
    assert alpha["experiments"] == [EXP]
    assert alpha["verdicts"] == {"reproduced": 1, "not_attempted": 1}
    acc = alpha["claims"][0]
    assert acc["verdict"]["verdict"] == "reproduced"
    assert acc["verdict"]["n"] == 3  # the unpublished seed 9 is not read
    assert acc["verdict"]["estimate"] == pytest.approx(0.9)
    assert acc["source"] == "000_synthetic.txt:1"
    assert alpha["claims"][1]["verdict"]["why"] == "RL environment"
    assert (beta["status"], beta["reason"]) == ("not_attempted", "ImageNet scale")


def test_show_json_and_table(exps, capsys):
    assert main(["show", "alpha", "--format", "json", "--experiments-dir", str(exps)]) == 0
    entry = json.loads(capsys.readouterr().out)
    assert entry["slug"] == "alpha" and len(entry["claims"]) == 2
    assert main(["show", "alpha", "--experiments-dir", str(exps)]) == 0
    out = capsys.readouterr().out
    assert "Alpha paper" in out and "reproduced" in out
    # each claim shows the summary's own words beside our statement, with file and line
    assert "\u201cquote for skipped\u201d" in out


def test_show_unknown_paper_suggests(exps, capsys):
    assert main(["show", "alpah", "--experiments-dir", str(exps)]) == 2
    assert "did you mean alpha" in capsys.readouterr().err


def test_catalog_imports_no_torch_or_matplotlib():
    code = (
        "import sys, shortsci_bench.catalog; "
        "print(sorted(m for m in ('torch', 'matplotlib', 'scipy', 'wandb') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_repository_catalogue_lists_every_claims_file(capsys):
    from shortsci_bench.claims.schema import EXPERIMENTS_DIR

    assert main(["list", "--format", "json"]) == 0
    slugs = {e["slug"] for e in json.loads(capsys.readouterr().out)}
    files = {p.parent.name for p in EXPERIMENTS_DIR.glob("*/claims.yaml")}
    # A claims file that fails to validate is warned about, not listed; the claims tests
    # catch those, so here every valid file must appear.
    assert slugs <= files
