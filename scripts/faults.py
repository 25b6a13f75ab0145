"""Fault injection: every case of issue 16, each in its own temp folder, one line per case.

    python scripts/faults.py            # all cases (a few minutes on 2 cores)
    python scripts/faults.py -k sigterm # the cases whose name matches

The cases are the tests in tests/test_faults.py (batchnorm_mnist at `tier=smoke`, tiny
mirrors and claims files in temp folders), run through pytest so the script and the test
suite cannot drift apart; slow cases included. Prints `<handled|NOT HANDLED> <case>` per
case and a last line `N passed, M failed`; exits 1 when any case failed or was skipped.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


class OneLinePerCase:
    def __init__(self) -> None:
        self.passed = self.failed = 0

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # a case's outcome is its call; a setup that fails or skips is an outcome too
        if report.when != "call" and report.passed:
            return
        if report.when == "teardown" and not report.failed:
            return
        case = report.nodeid.split("::", 1)[-1]
        if report.passed:
            self.passed += 1
            print(f"handled      {case} ({report.duration:.0f} s)", flush=True)
            return
        self.failed += 1
        why = "skipped" if report.skipped else report.longreprtext.strip().splitlines()[-1:]
        print(f"NOT HANDLED  {case}: {why if isinstance(why, str) else ' '.join(why)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("-k", default="", help="only the cases whose name matches (pytest -k)")
    args = p.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.chdir(REPO)
    sys.path.insert(0, str(REPO))
    plugin = OneLinePerCase()
    pytest_args = ["-p", "no:terminal", "-p", "no:cacheprovider", "-W", "ignore", "-o", "addopts="]
    pytest_args += ["tests/test_faults.py", *(["-k", args.k] if args.k else [])]
    code = pytest.main(pytest_args, plugins=[plugin])
    print(f"{plugin.passed} passed, {plugin.failed} failed")
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and not plugin.failed:
        return 1  # pytest itself could not run (no cases collected, a usage error)
    return 1 if plugin.failed else 0


if __name__ == "__main__":
    sys.exit(main())
