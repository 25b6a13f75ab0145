"""Two processes given the same job: one runs it, the other skips; the record stays whole."""

from __future__ import annotations

from filelock import FileLock

from tests.conftest import compose_cfg, needs_mnist


@needs_mnist
def test_a_locked_job_is_skipped(tmp_path, capsys):
    from shortsci_bench.config import config_hash, resolve_tier
    from shortsci_bench.run import run, run_dir_for

    cfg = compose_cfg(["+experiment=batchnorm_mnist", "tier=smoke"], tmp_path)
    resolve_tier(cfg)
    run_dir = run_dir_for(cfg, config_hash(cfg))
    run_dir.mkdir(parents=True)
    with FileLock(str(run_dir / ".lock")):  # as if another worker were running it
        assert run(compose_cfg(["+experiment=batchnorm_mnist", "tier=smoke"], tmp_path)) is None
    assert "another process is running this job" in capsys.readouterr().out
    assert not list(tmp_path.rglob("result.json"))
    rec = run(compose_cfg(["+experiment=batchnorm_mnist", "tier=smoke"], tmp_path))
    assert rec is not None and rec.status == "completed"
