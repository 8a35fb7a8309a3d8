"""Helpers shared by the web manager's tests (tests/test_web_*.py): a root with a few installed models.

``build_template_root`` installs, through the real worker (thread mode), a tiny SD-1
checkpoint and a LoRA that live inside ``ROOT/models``, and writes a stanza for a
checkpoint outside the root.  Tests copy the template (``copy_root``) instead of
installing again: everything in models.yaml and the manifests is root-relative.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from invokeai_model_install.app.configure import create_layout
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.install.run import run_plan
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.root.registry import Registry

#: The one line ``invokeai-model-install web`` prints on stdout.
LINE = re.compile(r"^Model manager: http://127\.0\.0\.1:(\d+)/\?token=([A-Za-z0-9_-]{20,})$")

LEGACY = "legacy-sd1"
LORA = "lora-sd-1"
OUTSIDE = "outside-model"


def build_template_root(root: Path, outside_dir: Path, tiny_checkpoints, tiny_extras) -> RootLayout:
    layout = RootLayout(root)
    create_layout(layout)
    ckpt = layout.kind_dir("main") / f"{LEGACY}.safetensors"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tiny_checkpoints["sd-1", "safetensors"], ckpt)
    lora = outside_dir.parent / "downloads" / f"{LORA}.safetensors"
    lora.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tiny_extras["lora-sd-1.safetensors"], lora)  # linked into ROOT/loras by the install
    result = run_plan(InstallPlan(imports=(str(ckpt), str(lora))), layout)
    assert result.ok, result.to_json()
    outside_dir.mkdir(parents=True, exist_ok=True)
    outside = outside_dir / "outside.ckpt"
    outside.write_bytes(b"not ours to delete")
    with Registry(layout.models_yaml).transaction() as doc:
        doc.add(OUTSIDE, {"description": "A checkpoint outside the root", "weights": str(outside),
                          "config": "configs/stable-diffusion/v1-inference.yaml", "format": "ckpt", "width": 512, "height": 512})
    names = Registry(layout.models_yaml).names()
    assert names == [LEGACY, OUTSIDE], names  # a LoRA gets no stanza in a 2.3 root (its manifest knows it)
    return layout


def copy_root(template: RootLayout, dest: Path) -> RootLayout:
    shutil.copytree(template.root, dest, symlinks=True)
    return RootLayout(dest)


class WebProcess:
    """The web command in a subprocess; ``line`` is the first stdout line."""

    def __init__(self, root: Path, *extra: str, env: dict | None = None, browser: bool = False) -> None:
        self.env = {k: v for k, v in os.environ.items() if k != "INVOKEAI_ROOT"}
        self.env.update({"INVOKEAI_INSTALL_WORKER": "thread", "PYTHONUNBUFFERED": "1"})
        self.env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "invokeai_model_install", "--root", str(root), "web", "--port", "0", *([] if browser else ["--no-browser"]), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env,
        )
        self.line = self._first_line(timeout=60)
        self.out_rest = ""
        self.err = ""

    def _first_line(self, timeout: float) -> str:
        got: list[str] = []
        reader = threading.Thread(target=lambda: got.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not got:
            self.proc.kill()
            raise AssertionError(f"no line within {timeout} s; stderr: {self.proc.stderr.read()}")
        return got[0].rstrip("\n")

    @property
    def base(self) -> str:
        m = LINE.match(self.line)
        assert m, self.line
        return f"http://127.0.0.1:{m.group(1)}"

    @property
    def token(self) -> str:
        return LINE.match(self.line).group(2)

    def client(self):
        import httpx

        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"did not stop within {timeout} s; stderr: {err}")
        self.out_rest, self.err = out, err
        return self.proc.returncode
