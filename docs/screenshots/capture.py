"""Re-create the text screenshots in this folder (run by hand from the repository root).

    python docs/screenshots/capture.py [form] [too-small] [progress] [question]
        (in the virtual environment the package is installed in; no name: all of them)

It runs the real installer inside tmux (100x35, TERM=xterm) and saves ``tmux capture-pane -p``:

* ``form.txt``        -- the form on a first run with the packaged catalogue, two import lines typed,
                         a scan folder chosen and conversion ticked (the focus on the in-place box below it).
* ``progress.txt``    -- (``progress``) the progress screen while tiny test models download from the loopback
                         stand-in hub and file server (tests/hubserver.py, tests/fileserver.py), throttled.
* ``finished.txt``    -- (``progress``) the same screen at the end (summary, log, BACK TO THE FORM / EXIT).
* ``question.txt``    -- the popup for an SD-2 checkpoint whose prediction type the file does not tell.
* ``too-small.txt``   -- what a 60x15 terminal gets.

Nothing leaves 127.0.0.1; the roots live in a temporary folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))

SESSION = "iami-shots"


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def start(cmd: list[str], env: dict[str, str], cols: int = 100, rows: int = 35) -> None:
    subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
    env_args = " ".join(f"{k}={shlex_quote(v)}" for k, v in env.items())
    line = f"cd {shlex_quote(str(REPO))} && env {env_args} {' '.join(shlex_quote(c) for c in cmd)}; sleep 600"
    tmux("new-session", "-d", "-s", SESSION, "-x", str(cols), "-y", str(rows), line)


def shlex_quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


def screen() -> str:
    return tmux("capture-pane", "-p", "-t", SESSION)


def wait_for(text: str, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = screen()
        if text in s:
            return s
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {text!r}:\n{screen()}")


def keys(*k: str, literal: bool = False) -> None:
    tmux("send-keys", "-t", SESSION, *(["-l"] if literal else []), *k)
    time.sleep(0.3)


def save(name: str, text: str) -> None:
    (OUT / name).write_text("\n".join(line.rstrip() for line in text.rstrip("\n").splitlines()) + "\n")
    print(f"wrote docs/screenshots/{name}")


NAMES = ("form", "too-small", "progress", "question")


def main(argv: list[str]) -> int:
    wanted = set(argv) or set(NAMES)
    if wanted - set(NAMES):
        raise SystemExit(f"unknown screenshot(s) {sorted(wanted - set(NAMES))}; choose from {', '.join(NAMES)}")
    py = sys.executable  # the interpreter of the active virtual environment
    base_env = {
        "TERM": "xterm",
        "LC_ALL": "C.UTF-8",
        "ESCDELAY": "25",
        "NCURSES_NO_UTF8_ACS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    with tempfile.TemporaryDirectory(prefix="iami-shots-") as tmp:
        tmp_path = Path(tmp)
        base_env["HF_HOME"] = str(tmp_path / "hf-home")

        root = tmp_path / "invokeai"
        (root / "configs").mkdir(parents=True)
        (tmp_path / "Downloads" / "models").mkdir(parents=True)
        if "form" in wanted:
            shot_form(py, root, tmp_path, base_env)
        if "too-small" in wanted:
            start([py, "-m", "invokeai_model_install", "--root", str(root)], base_env, cols=60, rows=15)
            save("too-small.txt", wait_for("Enlarge"))
        if "progress" in wanted:
            shot_progress(py, tmp_path, base_env)
        if "question" in wanted:
            shot_question(py, tmp_path, base_env)
        subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
        shutil.rmtree(tmp_path, ignore_errors=True)
    return 0


def shot_form(py: str, root: Path, tmp_path: Path, base_env: dict[str, str]) -> None:
    """The form on a first run with the packaged catalogue."""
    start([py, "-m", "invokeai_model_install", "--root", str(root)], base_env)
    wait_for("IMPORT LOCAL AND REMOTE MODELS")
    keys("Down", "Space", "Tab")  # deselect the 2nd recommended starter, go to the import box
    keys("https://civitai.com/api/download/models/12345", literal=True)
    keys("Enter")
    keys("stabilityai/sd-turbo", literal=True)
    keys("Tab", "Space", "Down")
    keys(str(tmp_path / "Downloads" / "models"), literal=True)
    keys("Enter", "Space", "Down", "Space", "Down")  # autoscan, convert; the focus on the in-place box
    wait_for("a folder: size known after resolving")
    save("form.txt", wait_for("[X]  Convert imported models"))


def shot_progress(py: str, tmp_path: Path, base_env: dict[str, str]) -> None:
    """The progress screen: tiny models from the loopback servers, throttled so we can watch."""
    from tests import modelgen
    from tests.fileserver import FileServer
    from tests.hubserver import HubServer

    models = tmp_path / "models"
    sd1 = modelgen.make_diffusers_model("sd-1", models / "sd-1")
    hub = HubServer().start()
    hub.add_repo("example/tiny-sd", sd1)
    hub.faults.throttle("*.safetensors", 3_000_000)
    (tmp_path / "files").mkdir(exist_ok=True)
    files = FileServer(tmp_path / "files").start()
    modelgen.write_single_file(sd1, tmp_path / "files" / "my-finetune.safetensors", fmt="safetensors")
    files.faults.throttle("*.safetensors", 2_000_000)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "tiny-sd:\n  description: Tiny SD-1 pipeline from the stand-in hub\n  repo_id: example/tiny-sd\n"
        "  recommended: true\n  size: 45000000\n"
    )
    root2 = tmp_path / "invokeai2"
    (root2 / "configs").mkdir(parents=True)
    start([py, "-m", "invokeai_model_install", "--root", str(root2), "--catalog", str(catalog)], {**base_env, "HF_ENDPOINT": hub.url})
    wait_for("IMPORT LOCAL AND REMOTE MODELS")
    keys("Tab")
    keys(files.url_for("my-finetune.safetensors"), literal=True)
    keys("Tab", "Tab", "Space", "Tab", "Tab", "Tab", "Enter")  # convert, (in place,) CANCEL, DONE
    wait_for("INSTALLING MODELS")
    wait_for("ETA")
    time.sleep(3)
    save("progress.txt", screen())
    save("finished.txt", wait_for("Finished:", timeout=600))
    hub.stop()
    files.stop()


def shot_question(py: str, tmp_path: Path, base_env: dict[str, str]) -> None:
    """The SD-2 question: a local single-file SD-2 checkpoint without global_step, converted."""
    from tests import modelgen

    models = tmp_path / "models"
    (tmp_path / "files").mkdir(exist_ok=True)
    sd2 = modelgen.make_diffusers_model("sd-2", models / "sd-2")
    ckpt = modelgen.write_single_file(sd2, tmp_path / "files" / "my-sd2-model.safetensors", fmt="safetensors")
    root3 = tmp_path / "invokeai3"
    (root3 / "configs").mkdir(parents=True)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    start([py, "-m", "invokeai_model_install", "--root", str(root3), "--catalog", str(empty)], base_env)
    wait_for("IMPORT LOCAL AND REMOTE MODELS")
    keys(str(ckpt), literal=True)
    keys("Tab", "Tab", "Space", "Tab", "Tab", "Tab", "Enter")  # convert, (in place,) CANCEL, DONE
    save("question.txt", wait_for("skip this model", timeout=600))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
