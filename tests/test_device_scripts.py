"""scripts/device/run.sh, the script a session with a lent GPU runs there, run here on the
CPU: it unpacks the carried datasets, runs the job list, and sends back records that name
the carried commit (no .git travels). Slow: a real smoke run, about a minute."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from shortsci_bench.data.mirror import default_mirror
from tests.conftest import REPO

MIRROR = default_mirror()


@pytest.mark.slow
@pytest.mark.skipif(MIRROR is None or not (MIRROR / "mnist").is_dir(), reason="no MNIST mirror")
def test_run_sh_runs_the_job_list_and_sends_back_records_naming_the_commit(tmp_path):
    dev = tmp_path / "device"
    (dev / "data").mkdir(parents=True)
    shutil.copy(MIRROR / "SHA256SUMS", dev / "data")
    shutil.copytree(MIRROR / "mnist", dev / "data" / "mnist")
    (dev / "COMMIT").write_text("0123456789abcdef0123456789abcdef01234567\n")
    (dev / "DATASETS").write_text("mnist\n")
    (dev / "jobs.txt").write_text(
        "# a comment, then a blank line: both skipped\n\n"
        "+experiment=batchnorm_mnist arm=bn tier=smoke logger=none\n"
    )
    out = tmp_path / "out"
    env = {
        **os.environ,
        "OUT": str(out),
        "DEVICE_DIR": str(dev),
        "DEVICE_WORK": str(tmp_path / "work"),
        "DEVICE_SITE": "none",  # the venv has the packages the device lacks
        "PYTHON": sys.executable,
    }
    env.pop("SHORTSCI_RUNS", None)
    done = subprocess.run(
        ["bash", "scripts/device/run.sh", "1", "600"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 of 1 jobs exited 0" in done.stdout, done.stdout
    with tarfile.open(out / "records.tar.gz") as tar:
        names = tar.getnames()
        results = [n for n in names if n.endswith("result.json")]
        assert [n.split("/")[1:4] for n in results] == [["batchnorm_mnist", "bn", "smoke"]]
        assert not any("/.hydra" in n for n in names)
        record = json.load(tar.extractfile(results[0]))
    assert record["status"] == "completed"
    assert record["provenance"]["git_commit"] == "0123456789abcdef0123456789abcdef01234567"
    assert "job 1 exit 0 after" in (out / "summary.txt").read_text()
