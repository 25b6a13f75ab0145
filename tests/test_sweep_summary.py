"""The end-of-sweep summary (shortsci_bench.sweep_summary) and failed-at-build records."""

from __future__ import annotations

from shortsci_bench.sweep_summary import note_job, summarize
from tests.conftest import needs_mnist, run_cfg


def test_summary_counts_each_kind_and_names_the_failures(tmp_path):
    note_job(tmp_path / "0", "completed", "runs/a/result.json", 3.0, "seed=0")
    note_job(tmp_path / "1", "skipped", "runs/b/result.json", 0.1, "seed=1")
    note_job(tmp_path / "2", "failed", "runs/c/result.json", 1.0, "seed=2")
    note_job(tmp_path / "3", "diverged", "runs/d/result.json", 1.0, "seed=3")
    (tmp_path / "4").mkdir()  # a job that never got to write its line is not counted
    text, status = summarize(tmp_path, 12.4)
    first = text.splitlines()[0]
    assert first == "[shortsci] sweep: 4 jobs in 12 s: 1 completed, 1 skipped, 1 diverged, 1 failed"
    assert "  failed: seed=2 -> runs/c/result.json" in text
    assert "  diverged: seed=3 -> runs/d/result.json" in text
    assert "records were final before this sweep" in text
    assert status == 1
    assert summarize(tmp_path / "0")[1] == 0


@needs_mnist
def test_a_model_that_cannot_be_built_is_a_failed_run_with_a_record(tmp_path):
    rec = run_cfg(["+experiment=batchnorm_mnist", "tier=smoke", "model.init_std=-1"], tmp_path)
    assert rec.status == "failed" and "std" in rec.error
    assert rec.metrics == {} and rec.provenance.git_commit is not None
    assert list(tmp_path.rglob("result.json"))
