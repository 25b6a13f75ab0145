"""Faults that used to pass silently (issue 16): each one now stops, says so, or recovers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shortsci_bench.runs.record import read_record
from tests.conftest import REPO, needs_mnist, run_cfg

SMOKE = ["+experiment=batchnorm_mnist", "tier=smoke"]
ENV = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
CLI = [sys.executable, "-m", "shortsci_bench"]


def _cli(
    args: list[str], timeout: int = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], cwd=REPO, env=env or ENV, capture_output=True, text=True, timeout=timeout
    )


def _science(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith("time/")}


def _records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("result.json"))]


@needs_mnist
@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGUSR1"])
def test_stop_signal_checkpoints_records_interrupted_and_resumes_identically(tmp_path, sig):
    reference = run_cfg([*SMOKE, "arm=bn"], tmp_path / "ref")
    runs = tmp_path / "stopped"
    args = [*SMOKE, "arm=bn", "threads=1", f"runs_dir={runs}"]
    stopped = _cli([*args, "debug.kill_at_step=30", f"debug.kill_signal={sig}"])
    assert stopped.returncode == 3, stopped.stdout + stopped.stderr
    [rec] = _records(runs)
    assert rec["status"] == "interrupted" and sig in rec["error"]
    assert "at step 31: checkpoint saved" in rec["error"]  # where it stopped, not at step 20
    assert "Traceback" not in stopped.stderr
    resumed = _cli(args)  # not "already done": an interrupted record is not final
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming from" in resumed.stdout
    [rec] = _records(runs)
    assert rec["status"] == "completed"
    assert _science(rec["metrics"]) == _science(reference.metrics)
    assert rec["history"] == reference.model_dump()["history"]


@needs_mnist
@pytest.mark.slow
def test_sigterm_stops_a_sweep_non_zero_and_names_the_jobs_left(tmp_path):
    args = ["-m", *SMOKE, "seed=0,1,2", "threads=1", f"runs_dir={tmp_path}"]
    out = _cli([*args, "debug.kill_at_step=30", "debug.kill_signal=SIGTERM"])
    assert out.returncode == 3, out.stdout + out.stderr
    assert "sweep stopped at job #0; 2 job(s) not run" in out.stderr
    assert "seed=1" in out.stderr and "seed=2" in out.stderr
    assert [r["status"] for r in _records(tmp_path)] == ["interrupted"]
    again = _cli(args)
    assert again.returncode == 0, again.stdout + again.stderr
    recs = _records(tmp_path)
    assert sorted(r["seed"] for r in recs) == [0, 1, 2]
    assert all(r["status"] == "completed" for r in recs)


def _strict_json(path: Path) -> dict:
    def refuse(const: str):
        raise ValueError(f"{path}: bare {const} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@needs_mnist
def test_huge_learning_rate_diverges_is_done_and_force_reruns_in_one_try(tmp_path, capsys):
    args = [*SMOKE, "arm=bn", "task.optimizer.lr=1e6", "eval_every=10"]
    rec = run_cfg(args, tmp_path)
    assert rec.status == "diverged" and "initial loss" in rec.error
    assert len(rec.history) == 3  # stopped at the third evaluation over the bound
    assert run_cfg(args, tmp_path) is None  # diverged is final: "already done"
    assert "already done" in capsys.readouterr().out
    again = run_cfg([*args, "force=true"], tmp_path)
    assert again is not None and again.status == "diverged"
    assert again.provenance.resumed_from is None  # from scratch, not the diverged checkpoint
    assert again.history == rec.history
    # a looser bound lets the same run complete
    loose = run_cfg([*args, "task.divergence.factor=null"], tmp_path / "loose")
    assert loose.status == "completed"


@needs_mnist
def test_non_finite_loss_diverges_with_a_strict_json_record(tmp_path):
    rec = run_cfg([*SMOKE, "arm=plain", "task.optimizer.lr=inf"], tmp_path)
    assert rec.status == "diverged" and "non-finite" in rec.error
    on_disk = _strict_json(next(tmp_path.rglob("result.json")))  # no bare NaN / Infinity
    assert on_disk["nonfinite"] and all(
        on_disk["history"][int(k.split(".")[1])][k.split(".", 2)[2]] is None
        for k in on_disk["nonfinite"]
        if k.startswith("history.")
    )


def test_old_records_with_bare_infinity_still_read(tmp_path):
    from shortsci_bench.collect.synthetic import make_record
    from shortsci_bench.runs.record import write_record

    rec = make_record("x", "a", "smoke", 0, {"loss": float("inf"), "acc": 0.5})
    path = write_record(tmp_path, rec)
    strict = _strict_json(path)
    assert strict["metrics"] == {"loss": None, "acc": 0.5}
    assert strict["nonfinite"] == {"metrics.loss": "inf"}
    old = {**rec.model_dump(mode="json"), "metrics": {"loss": float("inf"), "acc": 0.5}}
    old.pop("nonfinite")
    path.write_text(json.dumps(old))  # as older versions wrote it: bare Infinity
    assert read_record(path).metrics["loss"] == float("inf")


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory) -> Path:
    """Two finished smoke runs (arms bn and plain), copied by each checkpoint test."""
    root = tmp_path_factory.mktemp("finished")
    for arm in ("bn", "plain"):
        run_cfg([*SMOKE, f"arm={arm}"], root)
    return root


def _damage(ckpt: Path, how: str, other: Path) -> None:
    data = bytearray(ckpt.read_bytes())
    if how == "flipped":
        for i in range(len(data) // 3, len(data) // 3 + 64):
            data[i] ^= 0xFF
        ckpt.write_bytes(bytes(data))
    elif how == "truncated":
        ckpt.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "empty":
        ckpt.write_bytes(b"")
    elif how == "foreign":  # another config's checkpoint, with its own valid sidecar
        shutil.copy(other, ckpt)
        shutil.copy(other.with_name(other.name + ".json"), ckpt.with_name(ckpt.name + ".json"))


@needs_mnist
@pytest.mark.parametrize("how", ["flipped", "truncated", "empty", "foreign"])
def test_damaged_or_foreign_checkpoint_is_moved_aside_and_the_run_restarts(
    tmp_path, finished_runs, how, capsys
):
    runs = tmp_path / "runs"
    shutil.copytree(finished_runs, runs)
    [bn_dir] = (runs / "batchnorm_mnist" / "bn" / "smoke").iterdir()
    [plain_dir] = (runs / "batchnorm_mnist" / "plain" / "smoke").iterdir()
    reference = read_record(bn_dir / "result.json")
    (bn_dir / "result.json").unlink()  # as if killed after its last checkpoint
    (bn_dir / ".result.json.abc123.tmp").write_text("{")  # and mid-write of its record
    ckpt = bn_dir / "checkpoints" / "last.ckpt"
    _damage(ckpt, how, plain_dir / "checkpoints" / "last.ckpt")
    capsys.readouterr()
    rec = run_cfg([*SMOKE, "arm=bn"], runs)
    out = capsys.readouterr().out
    assert "not resumed" in out and "moved aside" in out and "starting from scratch" in out
    assert rec.status == "completed" and rec.provenance.resumed_from is None
    assert _science(rec.metrics) == _science(reference.metrics)
    assert list((bn_dir / "checkpoints").glob("last.ckpt.bad-*"))
    assert not list(bn_dir.glob(".*.tmp"))  # stray temp files cleaned at start
    meta = json.loads((bn_dir / "checkpoints" / "last.ckpt.json").read_text())
    assert meta["config_hash"] == rec.config_hash and len(meta["sha256"]) == 64


@needs_mnist
def test_the_lock_is_taken_before_the_already_done_check(tmp_path, finished_runs, capsys):
    from filelock import FileLock

    runs = tmp_path / "runs"
    shutil.copytree(finished_runs, runs)
    [bn_dir] = (runs / "batchnorm_mnist" / "bn" / "smoke").iterdir()
    capsys.readouterr()
    with FileLock(str(bn_dir / ".lock")):  # a second process mid-way through this job
        assert run_cfg([*SMOKE, "arm=bn"], runs) is None
    out = capsys.readouterr().out
    assert "another process is running this job" in out and "already done" not in out


def _tiny_mirror(tmp_path: Path) -> Path:
    """A mirror holding small MNIST idx files in the real format, with its SHA256SUMS."""
    from shortsci_bench.data.mirror import sha256
    from tests.conftest import gzip_file, write_idx_mnist

    plain, mirror = tmp_path / "plain", tmp_path / "mirror"
    write_idx_mnist(plain)
    (mirror / "mnist").mkdir(parents=True)
    lines = []
    for f in sorted(plain.iterdir()):
        gz = mirror / "mnist" / f"{f.name}.gz"
        gzip_file(f, gz)
        lines.append(f"{sha256(gz)}  mnist/{gz.name}")
    (mirror / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return mirror


def test_data_damaged_after_unpacking_fails_fast_and_make_data_repairs_it(tmp_path):
    from shortsci_bench.data import mirror as mirror_mod

    mirror, root = _tiny_mirror(tmp_path), tmp_path / "data"
    make_data = ["--mirror", str(mirror), "--root", str(root), "--only", "mnist"]
    assert mirror_mod.main(make_data) == 0
    images = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    clean = images.read_bytes()
    images.write_bytes(clean[:100] + bytes(1000) + clean[1100:])  # same size, garbled
    args = [
        *SMOKE,
        f"runs_dir={tmp_path / 'runs'}",
        f"dataset.root={root}",
        f"dataset.mirror={mirror}",
        "dataset.download=false",
    ]
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], cwd=REPO, env=ENV, capture_output=True, text=True
    )
    assert "exit 2 torch imported: False" in out.stdout, out.stdout + out.stderr  # < 1 s
    assert str(images) in out.stderr and "make data" in out.stderr
    assert "Traceback" not in out.stderr and not list(tmp_path.rglob("result.json"))
    assert mirror_mod.main(make_data) == 0  # `make data` unpacks the damaged file again
    assert images.read_bytes() == clean
    images.unlink()  # a deleted file: the run itself unpacks it again from the mirror
    rec = run_cfg(args, tmp_path / "runs")
    assert rec.status == "completed"
    assert set(rec.provenance.data["files"]) == {
        f"MNIST/raw/{n}"
        for n in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    }


_PROBE = """
import runpy
import sys
try:
    runpy.run_module("shortsci_bench", run_name="__main__", alter_sys=True)  # python -m
except SystemExit as exc:
    print("exit", exc.code, "torch imported:", "torch" in sys.modules)
"""


BAD_SETTINGS = [
    ("trainer.max_stpes=5", "did you mean `trainer.max_steps`?"),
    ("seed=-1", "seed=-1: must be an integer >= 0 (e.g. seed=0)"),
    ("seed=1.5", "seed=1.5: must be an integer >= 0"),
    ("task.optimizer.lr=abc", "task.optimizer.lr='abc': must be a positive number"),
    ("task.optimizer.lr=0", "task.optimizer.lr=0: must be a positive number"),
    ("trainer.max_steps=-5", "trainer.max_steps=-5: must be a positive integer"),
    ("threads=0", "threads=0: must be `auto` or an integer >= 1"),
    ("tier=huge", "tier='huge' is not a tier; use one of smoke, quick, paper"),
]


@pytest.mark.parametrize(("arg", "says"), BAD_SETTINGS, ids=[a for a, _ in BAD_SETTINGS])
def test_bad_setting_is_one_line_naming_it_before_torch_is_imported(tmp_path, arg, says):
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, "+experiment=batchnorm_mnist", arg, f"runs_dir={tmp_path}"],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "exit 2 torch imported: False" in out.stdout, out.stdout + out.stderr
    [line] = out.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith("error: ") and says in line


def _csv_steps(path: Path) -> list[int]:
    import csv

    with open(path) as fh:
        return [int(row["step"]) for row in csv.DictReader(fh) if row.get("test/acc")]


@needs_mnist
def test_csv_logs_of_every_attempt_survive_a_resume(tmp_path):
    args = [*SMOKE, "arm=bn", "eval_every=10"]
    stopped = run_cfg([*args, "debug.kill_at_step=25", "debug.kill_signal=SIGTERM"], tmp_path)
    assert stopped.status == "interrupted"  # in-process: the handler caught our own SIGTERM
    assert stopped.provenance.attempts == ["logs/attempt-1"]
    rec = run_cfg(args, tmp_path)
    assert rec.status == "completed"
    assert rec.provenance.attempts == ["logs/attempt-1", "logs/attempt-2"]
    run_dir = next(tmp_path.rglob("result.json")).parent
    first, second = (_csv_steps(run_dir / a / "metrics.csv") for a in rec.provenance.attempts)
    assert first == [9, 19] and second == [29, 39]  # Lightning logs step - 1: 10, 20 | 30, 40
    assert [int(h["step"]) for h in rec.history] == [10, 20, 30, 40]


@pytest.mark.parametrize(
    ("field", "fields", "says"),
    [
        ("metric", {"metric": "test/accc"}, "field metric: batchnorm_mnist declares no metric"),
        ("arm", {"arm": "bnn"}, "field arm: batchnorm_mnist has no arm 'bnn'"),
        ("invalid", {"kind": "valeu"}, "invalid claims"),
    ],
    ids=["metric", "arm", "invalid_file"],
)
def test_collect_refuses_claims_naming_what_does_not_exist(tmp_path, capsys, field, fields, says):
    from shortsci_bench.collect.__main__ import main
    from shortsci_bench.collect.synthetic import claim, write_claims

    exps, runs = tmp_path / "experiments", tmp_path / "runs"
    spec = {"experiment": "batchnorm_mnist", "metric": "test/acc", "arm": "bn"}
    spec.update(target=0.98, tolerance=0.01)
    kind = fields.pop("kind", "value")
    spec.update(fields)
    path = write_claims(
        exps, "typo_paper", [claim("bn_acc", kind, **spec)], experiments=["batchnorm_mnist"]
    )
    base = ["--runs", str(runs), "--experiments-dir", str(exps), "--format", "csv"]
    capsys.readouterr()
    assert main(base) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "'bn_acc'" in err and says in err
    assert main([*base, "--lenient"]) == 0  # the old behaviour: warnings, exit 0
    assert says in capsys.readouterr().err
