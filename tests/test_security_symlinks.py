"""Issue 11 item 18: symlinks planted in a (shared) root are never followed for writing; symlinked
subfolders of a local import are scanned, as a loader would follow them."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import subprocess
import sys
import textwrap

import pytest

from invokeai_model_install.net import engine
from invokeai_model_install.net.partial import partial_key
from invokeai_model_install.net.settings import DownloadSettings, RemoteFile, Resolved

MB = 1 << 20


def _settings(**kw):
    base = dict(hf_endpoint="http://127.0.0.1:9", backoff=0.01, retries=2, read_timeout=10, split_size=1 * MB, max_connections=3,
                sidecar_interval=0.0)
    base.update(kw)
    return DownloadSettings(**base)


def test_part_file_and_sidecar_never_write_through_planted_symlinks(file_server, tmp_path):
    data = hashlib.sha256(b"x").digest() * (3 * MB // 32)
    (file_server.folder / "m.safetensors").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    url = file_server.url_for("m.safetensors")
    partial = tmp_path / "partial"
    partial.mkdir()
    key = partial_key(url, "m.safetensors")
    victims = {}
    for suffix in (".part", ".json", ".json.tmp"):
        victim = tmp_path / f"victim{suffix}"
        victim.write_text("precious\n")
        victims[suffix] = victim
        os.symlink(victim, partial / f"{key}{suffix}")
    rf = RemoteFile(url, "m.safetensors", len(data), sha)
    res = engine.download(Resolved((rf,), None, "m", None, len(data)), tmp_path / "dest", partial_dir=partial, settings=_settings(),
                          on_event=lambda e: None)
    assert res.paths["m.safetensors"].read_bytes() == data
    for victim in victims.values():
        assert victim.read_text() == "precious\n", victim


def test_worker_log_is_not_opened_through_a_symlink(tmp_path):
    from invokeai_model_install.app.configure import create_layout
    from invokeai_model_install.root.layout import RootLayout

    layout = RootLayout(tmp_path / "root")
    create_layout(layout)
    layout.partial_dir.mkdir(parents=True, exist_ok=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.symlink(victim, layout.partial_dir / "worker.log")
    code = textwrap.dedent(f"""
        from pathlib import Path
        from invokeai_model_install.install.plan import InstallPlan
        from invokeai_model_install.install.worker import start_install
        from invokeai_model_install.root.layout import RootLayout
        if __name__ == "__main__":
            h = start_install(InstallPlan(remove_starters=("ghost",)), RootLayout(Path({str(layout.root)!r})), mode="process")
            result = h.join(120)
            print("done", result.outcomes[0].status, result.error)
    """)
    script = tmp_path / "run.py"
    script.write_text(code)
    # PYTHONVERBOSE: the worker process writes import traces to its stderr, i.e. into worker.log
    env = {**os.environ, "PYTHONVERBOSE": "1"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0 and "done skipped" in proc.stdout, proc.stderr[-2000:]
    log = layout.partial_dir / "worker.log"
    assert not log.is_symlink() and log.stat().st_size > 0  # the planted link was replaced by the real log
    assert victim.read_text() == "precious\n"


def test_symlinked_subfolder_of_a_local_import_is_scanned(tmp_path):
    torch = pytest.importorskip("torch")
    from invokeai_model_install.app.configure import create_layout
    from invokeai_model_install.install.plan import InstallPlan
    from invokeai_model_install.install.run import run_plan
    from invokeai_model_install.identify.safety import scan
    from invokeai_model_install.root.layout import RootLayout
    from tests.test_safety import OsSystem, write_payload

    elsewhere = tmp_path / "elsewhere" / "unet"
    elsewhere.mkdir(parents=True)
    marker = tmp_path / "marker"
    write_payload(elsewhere / "diffusion_pytorch_model.bin", "zip", OsSystem(marker))
    (elsewhere / "config.json").write_text('{"_class_name": "UNet2DConditionModel", "in_channels": 4, "cross_attention_dim": 768}')
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}')
    os.symlink(elsewhere, model / "unet")
    (model / "loop").symlink_to(model)  # a loop is walked once
    verdict = scan(model)
    assert verdict.verdict == "dangerous" and "unet/diffusion_pytorch_model.bin" in verdict.message
    layout = RootLayout(tmp_path / "root")
    create_layout(layout)
    result = run_plan(InstallPlan(imports=(str(model),)), layout, on_event=lambda e: None)
    assert [o.status for o in result.outcomes] == ["failed"] and "dangerous" in result.outcomes[0].message
    assert not marker.exists()
