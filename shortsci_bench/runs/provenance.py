"""What every result records about where it came from."""

from __future__ import annotations

import functools
import hashlib
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
        # Untracked files count where code lives: an uncommitted new module ran too.
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=normal", "--", *SOURCE_PATHS,
             *(f":(exclude){x}" for x in SOURCE_EXCLUDE)],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=5,
        )  # fmt: skip
        return commit.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        return None, None


# What "the code that ran" is: the package, the shared configs and the papers' code and
# configs; not published records.
SOURCE_PATHS = ("shortsci_bench", "conf", "experiments", "pyproject.toml")
SOURCE_EXCLUDE = ("experiments/*/results",)
SOURCE_SUFFIXES = (".py", ".yaml", ".toml")


def _blob_id(data: bytes) -> str:
    """git's object id of a blob with this content (what `git hash-object` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _source_digest(entries: list[tuple[str, str]]) -> str:
    lines = sorted(f"{path} {blob}" for path, blob in entries)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def _is_source(path: str) -> bool:
    return (
        path.endswith(SOURCE_SUFFIXES)
        and (path.split("/")[0] in SOURCE_PATHS or path in SOURCE_PATHS)
        and not (path.startswith("experiments/") and "/results/" in path)
    )


def source_hash(repo: Path = REPO) -> str:
    """A hash of the code and configs in the working tree, comparable with a commit's
    (`source_hash_at`): the same files and contents give the same hash."""
    entries = []
    for top in SOURCE_PATHS:
        base = repo / top
        files = [base] if base.is_file() else base.rglob("*") if base.is_dir() else []
        for f in files:
            rel = f.relative_to(repo).as_posix()
            if f.is_file() and _is_source(rel) and "__pycache__" not in rel:
                entries.append((rel, _blob_id(f.read_bytes())))
    return _source_digest(entries)


@functools.lru_cache(maxsize=64)
def source_hash_at(commit: str, repo: Path = REPO) -> str | None:
    """The same hash for the files of `commit` (None when git does not know it); cached,
    since publishing asks it once per record and records share a few commits."""
    try:
        out = subprocess.run(
            ["git", "ls-tree", "-r", commit, "--", *SOURCE_PATHS],
            cwd=repo, capture_output=True, text=True, timeout=20,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    entries = []
    for line in out.stdout.splitlines():
        meta, path = line.split("\t", 1)
        if _is_source(path):
            entries.append((path, meta.split()[2]))
    return _source_digest(entries)


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
