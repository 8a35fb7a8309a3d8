"""Time to the form's first frame, against a build that imports torch and diffusers first.

Run by hand (not in CI):  ``.venv/bin/python benchmarks/bench_startup.py [--runs 5]``

Each variant is started on a real pty (100x35, TERM=xterm) and timed from the spawn to the
moment the rendered screen shows the form ("IMPORT LOCAL AND REMOTE MODELS").  Variants run
interleaved, so machine noise hits them alike; the medians and the ratio against the eager
build (same run) are printed:

* ``form``   -- ``python -m invokeai_model_install.app.tui`` (the form alone, as shipped: lazy imports)
* ``cli``    -- ``python -m invokeai_model_install`` (what users run; argparse and root checks too)
* ``eager``  -- the same form after ``import torch, diffusers, huggingface_hub`` (what an eager build costs)
* ``python`` -- a bare interpreter printing the marker (the floor)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.ptyterm import PtyTerm  # noqa: E402  (after the path set-up)

MARKER = "IMPORT LOCAL AND REMOTE MODELS"


def variants(root: Path) -> dict[str, list[str]]:
    py = sys.executable
    args = ["--root", str(root)]
    eager = (
        "import torch, diffusers, huggingface_hub.constants, sys; "
        "from invokeai_model_install.app.tui.__main__ import main; "
        f"sys.exit(main({args!r}))"
    )
    return {
        "form": [py, "-m", "invokeai_model_install.app.tui", *args],
        "cli": [py, "-m", "invokeai_model_install", *args],
        "eager": [py, "-c", eager],
        "python": [py, "-c", f"print({MARKER!r}); import time; time.sleep(0.2)"],
    }


def first_frame(argv: list[str]) -> float:
    """Seconds from spawn to the marker on the rendered screen."""
    t0 = time.perf_counter()
    term = PtyTerm(argv, cols=100, rows=35, timeout=300)
    try:
        while MARKER not in term.text():
            if not term.pump(0.005):
                raise RuntimeError(f"{argv} exited before drawing:\n{term.dump()}")
        return time.perf_counter() - t0
    finally:
        term.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        root = Path(tmp) / "invokeai"
        (root / "configs").mkdir(parents=True)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never touch the network
        cmds = variants(root)
        times: dict[str, list[float]] = {name: [] for name in cmds}
        first_frame(cmds["eager"])  # warm the page cache for torch before timing
        for _ in range(args.runs):
            for name, argv in cmds.items():
                times[name].append(first_frame(argv))
    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"time to first frame, median of {args.runs} (min..max), 100x35 pty:")
    for name, ts in times.items():
        print(f"  {name:7s} {med[name] * 1000:7.0f} ms  ({min(ts) * 1000:.0f}..{max(ts) * 1000:.0f})")
    print(f"eager / form = {med['eager'] / med['form']:.1f}x   form goal <= 300 ms: {'met' if med['form'] <= 0.3 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
