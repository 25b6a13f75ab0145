"""Look at a report page the way a reader does: headless Chromium at a given width.

`measure(page)` loads a copy of the page with a one-line script that records the
document's scroll width, client width and height, and reads them back from the DOM that
Chromium dumps; `screenshot(page, png)` takes a picture. Both need a `chromium` (or
`chromium-browser`, `google-chrome`) binary: `find_chromium()` says whether there is one
(`apt-get install chromium` on Debian; `make report-check` uses it).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# --no-sandbox: CI and our machines run as root, where Chromium's sandbox refuses to start.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio")
PROBE = (
    "<script>document.body.setAttribute('data-measure', JSON.stringify({"
    "scroll_width: document.documentElement.scrollWidth,"
    "client_width: document.documentElement.clientWidth,"
    "height: document.documentElement.scrollHeight,"
    "images: Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length,"
    "external: Array.from(document.images).filter(i => !i.src.startsWith('data:')).length"
    "}))</script>"
)


@dataclass(frozen=True)
class Measure:
    """What a reader's browser window shows of a page."""

    scroll_width: int  # the page's width; more than client_width = it scrolls sideways
    client_width: int
    height: int
    images: int  # images that loaded and have pixels
    external: int  # images not embedded in the page (it would not survive being mailed)

    @property
    def overflows(self) -> bool:
        return self.scroll_width > self.client_width


def find_chromium() -> str | None:
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium() -> str:
    path = find_chromium()
    if path is None:
        raise RuntimeError(
            "no Chromium found: install it (Debian: `apt-get install chromium`) to check pages"
        )
    return path


def measure(page: str | Path, width: int = 1280, timeout: float = 60.0) -> Measure:
    """Load `page` at `width` px and measure it (the page itself is not modified)."""
    page = Path(page)
    text = page.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        # The copy sits beside the original so relative links resolve the same way.
        probe = page.with_name(f".measure-{Path(tmp).name}-{page.name}")
        probe.write_text(text.replace("</body>", PROBE + "</body>"))
        try:
            out = subprocess.run(
                [
                    _chromium(),
                    *FLAGS,
                    f"--window-size={width},900",
                    f"--user-data-dir={tmp}",
                    "--dump-dom",
                    probe.resolve().as_uri(),
                ],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=True,
            ).stdout
        finally:
            probe.unlink(missing_ok=True)
    m = re.search(r'data-measure="([^"]*)"', out)
    if m is None:
        raise RuntimeError(f"Chromium did not run the measuring script on {page}")
    data = json.loads(m.group(1).replace("&quot;", '"'))
    return Measure(**data)


def screenshot(
    page: str | Path, png: str | Path, width: int = 1280, height: int = 2000, timeout: float = 60.0
) -> Path:
    """A PNG of the top `height` px of `page` at `width` px."""
    png = Path(png)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                _chromium(),
                *FLAGS,
                f"--window-size={width},{height}",
                f"--user-data-dir={tmp}",
                f"--screenshot={png.resolve()}",
                Path(page).resolve().as_uri(),
            ],
            capture_output=True,
            timeout=timeout,
            check=True,
        )
    return png


def main(argv: list[str] | None = None) -> int:
    """`python -m shortsci_bench.report.browser report/` measures every page and screenshots
    the index; exit 1 if a page scrolls sideways at 1280 px or has an image not embedded."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("report", nargs="?", default="report")
    ap.add_argument("--width", type=int, default=1280)
    args = ap.parse_args(argv)
    folder = Path(args.report)
    bad = 0
    for page in sorted(folder.glob("*.html")):
        m = measure(page, args.width)
        flag = "OVERFLOWS" if m.overflows else "fits"
        if m.overflows or m.external:
            bad += 1
        print(
            f"{page.name}: {flag} ({m.scroll_width}/{m.client_width} px wide), "
            f"{m.height} px tall, {m.images} images, {m.external} not embedded"
        )
    shot = screenshot(folder / "index.html", folder / "index.png", args.width)
    print(f"screenshot of the index: {shot}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
