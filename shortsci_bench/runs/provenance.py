"""What every result records about where it came from."""

from __future__ import annotations

import os
import platform
import shlex
import socket
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("torch", "torchvision", "lightning", "hydra-core", "omegaconf", "numpy", "wandb")


def git_state(repo: Path = REPO) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout; where the tree was copied without `.git` (a remote
    GPU box), `$SHORTSCI_GIT_COMMIT` names the commit it was copied from."""
    env_commit = os.environ.get("SHORTSCI_GIT_COMMIT")
    if env_commit:
        return env_commit, os.environ.get("SHORTSCI_GIT_DIRTY", "0") == "1"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return None, None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return commit.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        return None, None


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def device_description() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def command_line() -> str:
    return shlex.join([Path(sys.executable).name, "-m", "shortsci_bench", *sys.argv[1:]])


def hostname() -> str:
    return socket.gethostname()
