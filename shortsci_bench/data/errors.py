"""The one error a missing dataset raises: it says what to put where."""

from __future__ import annotations

import socket
import threading
from pathlib import Path


class DatasetMissingError(RuntimeError):
    def __init__(self, dataset: str, looked_in: Path | str, expected: str, extra: str = ""):
        self.dataset = dataset
        msg = (
            f"{dataset} is not available: nothing usable in {looked_in} ({expected} expected), "
            f"and it could not be downloaded.\n"
            f"Fix it in one of two ways:\n"
            f"  1. point dataset.mirror at a folder holding the files "
            f"(e.g. `dataset.mirror=/path/to/shared/data`, see README 'Data'), or put them under {looked_in};\n"
            f"  2. allow a download on a machine with internet (`dataset.download=true`, the default)."
        )
        if extra:
            msg += f"\n{extra}"
        super().__init__(msg)


def host_reachable(host: str, port: int = 443, timeout: float = 1.0) -> bool:
    """True if `host` resolves and accepts a TCP connection within `timeout` seconds.

    DNS lookups can hang far longer than their socket timeout, so the lookup runs in a
    daemon thread that is abandoned after `timeout`: a missing network costs a second,
    never a stack trace.
    """
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.2)
    return bool(result and result[0])


class DataCorruptError(RuntimeError):
    """A file a dataset reads is missing or differs from what was unpacked."""

    def __init__(self, path: Path | str, what: str, fix: str = ""):
        self.path = Path(path)
        fix = fix or (
            "run `make data` to unpack it again from the mirror (or delete it to download "
            "it afresh)"
        )
        super().__init__(f"{path} {what}: the data is damaged; {fix}")
