"""End to end: plans run against the loopback hub and file servers with tiny real models.

No mocks of the network: the stand-in hub (tests/hubserver.py) and the plain file server
(tests/fileserver.py) serve the tiny models over HTTP on 127.0.0.1; byte counters of the
servers prove what a re-run fetched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from invokeai_model_install.app import cli
from invokeai_model_install import events as ev
from invokeai_model_install.root import manifest as mf
from invokeai_model_install.app.configure import create_layout
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.root.registry import Registry
from invokeai_model_install.install.dry_run import resolve_plan
from invokeai_model_install.install.run import run_plan
from invokeai_model_install.install.worker import start_install

REPO = Path(__file__).resolve().parent.parent

CATALOG = """
tiny-sd:
  description: Tiny SD-1 starter (60 MB)
  repo_id: test/tiny-sd
  format: diffusers
  vae:
    repo_id: test/tiny-vae
  recommended: true
  default: true
  size: 60000000
tiny-sd-moved:
  description: A starter whose first repo is gone
  repo_id: gone/tiny-sd
  fallback_repo_ids: [test/tiny-sd-copy]
  format: diffusers
  recommended: false
  size: 60000000
"""


@pytest.fixture
def hub(hub_server, tiny_models, tmp_path):
    """The hub with the tiny SD-1 pipeline (fp16 variant files too) and its VAE as a repo of its own."""
    hub_server.add_repo("test/tiny-sd", tiny_models.fp16("sd-1"))
    hub_server.add_repo("test/tiny-vae", tiny_models["sd-1"] / "vae")
    return hub_server


@pytest.fixture
def catalog(tmp_path):
    p = tmp_path / "catalog.yaml"
    p.write_text(CATALOG)
    return p


@pytest.fixture
def root(tmp_path):
    layout = RootLayout(tmp_path / "invokeai")
    create_layout(layout)
    return layout


def hub_bytes(hub) -> int:
    return hub.stats.served("/test/*")


def stanzas(layout):
    data = yaml.safe_load(layout.models_yaml.read_text())  # always valid YAML
    return {k: v for k, v in (data or {}).items() if isinstance(v, dict)}


def run(layout, plan, catalog=None, **kw):
    seen: list = []
    result = run_plan(plan, layout, catalog_path=catalog, on_event=seen.append, **kw)
    return result, seen


# --- starters, variants, VAE, re-run ------------------------------------------------------------


def test_starter_with_vae_then_rerun_fetches_nothing(root, hub, catalog, capsys, monkeypatch):
    code = cli.main(["--root", str(root.root), "--catalog", str(catalog), "--yes"])
    out, err = capsys.readouterr()
    transcript = out
    assert code == 0, err
    assert err == ""
    s = stanzas(root)
    assert s["tiny-sd"]["format"] == "diffusers" and s["tiny-sd"]["path"] == "models/sd/tiny-sd"
    # InvokeAI 2.3.5 reads a diffusers VAE only from its HF cache (models/hub), as vae: {repo_id}
    assert s["tiny-sd"]["vae"] == {"repo_id": "test/tiny-vae"}
    assert s["tiny-sd"]["default"] is True  # the catalogue's default on a first install
    assert set(s) == {"tiny-sd"}  # no VAE stanza: 2.3.5 would list it as a main model
    folder = root.root / "models/sd/tiny-sd"
    assert (folder / "model_index.json").is_file()
    vae_repo = root.hf_repo_dir("test/tiny-vae")
    commit = (vae_repo / "refs" / "main").read_text()
    assert (vae_repo / "snapshots" / commit / "config.json").is_file()
    assert not root.legacy_diffusers_dir.exists()
    m = mf.read_manifest(root, "tiny-sd")
    assert m.revision and m.state == "installed" and all(len(f.sha256) == 64 for f in m.files)
    assert "installed as tiny-sd" in out
    served = hub_bytes(hub)
    assert served > 0

    # re-run: already installed, zero bytes from the hub
    code = cli.main(["--root", str(root.root), "--catalog", str(catalog), "--yes", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["fetched_bytes"] == 0
    assert doc["items"][0]["status"] == "skipped" and "already installed" in doc["items"][0]["message"]
    assert hub_bytes(hub) == served
    print(f"TRANSCRIPT:\n{transcript}\nRE-RUN: first run served {served} bytes, re-run served {hub_bytes(hub) - served} bytes")


def test_hub_repo_fp16_variant(root, hub, tiny_models):
    result, seen = run(root, InstallPlan(imports=("test/tiny-sd",)))
    assert result.ok, result.failed
    from invokeai_model_install.identify.probe import probe

    folder = root.root / "models/sd/tiny-sd"
    pr = probe(folder)
    assert pr.kind == "main" and pr.base == "sd-1" and pr.dtype == "float16"
    # plain names: the folder loads without variant="fp16"
    assert (folder / "unet/diffusion_pytorch_model.safetensors").is_file()
    assert not list(folder.rglob("*.fp16.*"))
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)
    assert pipe.unet.dtype.is_floating_point and pipe.unet.config.cross_attention_dim == 768
    assert not mf.verify_manifest(root, mf.read_manifest(root, "tiny-sd"), full=True)
    # the fp32 weights were not fetched
    fp32 = hub.stats.served("/test/tiny-sd/resolve/*/unet/diffusion_pytorch_model.safetensors")
    assert fp32 == 0
    # --full-precision is another plan: fp32 files into a second folder? no: same source, already installed
    result2, _ = run(root, InstallPlan(imports=("test/tiny-sd",), precision="fp32"))
    assert result2.outcomes[0].status == "skipped"


def test_starter_fallback_repo(root, hub_server, tiny_models, catalog):
    hub_server.add_repo("test/tiny-sd-copy", tiny_models["sd-1"])
    result, _ = run(root, InstallPlan(install_starters=("tiny-sd-moved",)), catalog)
    assert result.ok, result.failed
    assert stanzas(root)["tiny-sd-moved"]["path"] == "models/sd/tiny-sd-moved"


# --- URL + convert, folder scan, local files ---------------------------------------------------------


def test_url_checkpoint_with_convert(root, file_server, tiny_checkpoints):
    shutil.copy(tiny_checkpoints["sd-1", "safetensors"], file_server.folder / "dreamy.safetensors")
    url = file_server.url_for("dreamy.safetensors")
    result, seen = run(root, InstallPlan(imports=(url,), convert=True, precision="fp32"))
    assert result.ok, result.failed
    s = stanzas(root)["dreamy"]
    assert s["format"] == "diffusers" and s["path"] == "models/converted_ckpts/dreamy"  # 2.3.5's folder for conversions
    assert (root.root / "models/converted_ckpts/dreamy/unet/config.json").is_file()
    converted = [e for e in seen if isinstance(e, ev.ItemConverted)]
    assert len(converted) == 1 and converted[0].path == "models/converted_ckpts/dreamy"
    assert not any(root.kind_dir("main").glob("*"))  # the downloaded checkpoint was not kept
    m = mf.read_manifest(root, "dreamy")
    assert m.key.endswith("#diffusers") and m.key.startswith("url:")


def test_url_checkpoint_single_file_legacy_stanza(root, file_server, tiny_checkpoints):
    shutil.copy(tiny_checkpoints["sd-1", "safetensors"], file_server.folder / "plain.safetensors")
    result, _ = run(root, InstallPlan(imports=(file_server.url_for("plain.safetensors"),)))
    assert result.ok, result.failed
    s = stanzas(root)["plain"]
    assert s == {**s, "format": "ckpt", "weights": "models/checkpoints/plain.safetensors",
                 "config": "configs/stable-diffusion/v1-inference.yaml", "width": 512, "height": 512}
    assert (root.root / s["config"]).is_file()


def test_a_url_without_a_file_name_is_named_after_the_servers_file(root, file_server, tiny_extras):
    """civitai's /api/download/models/ID: the model takes the name from Content-Disposition, not "ID"."""
    shutil.copy(tiny_extras["lora-sd-1.safetensors"], file_server.folder / "blob")
    url = file_server.route("/api/download/models/4384", "blob")
    file_server.content_disposition["blob"] = 'attachment; filename="ghibli-style_v2.safetensors"'
    result, _ = run(root, InstallPlan(imports=(url,)))
    assert result.ok, result.failed
    # a LoRA: no stanza in a 2.3 root; named after the server's file (manifest), placed in ROOT/loras
    assert mf.read_manifest(root, "ghibli-style_v2") is not None and mf.read_manifest(root, "4384") is None
    assert (root.kind_dir("lora") / "ghibli-style_v2.safetensors").is_file()


def test_folder_scan_and_autoscan(root, tmp_path, tiny_checkpoints, tiny_extras):
    scan = tmp_path / "downloads"
    (scan / "loras").mkdir(parents=True)
    shutil.copy(tiny_checkpoints["sd-1", "safetensors"], scan / "model-one.safetensors")
    shutil.copy(tiny_extras["lora-sd-1.safetensors"], scan / "loras" / "style.safetensors")
    shutil.copy(tiny_extras["embedding.pt"], scan / "token.pt")
    (scan / "readme.txt").write_text("hi")
    result, _ = run(root, InstallPlan(scan_dir=scan, autoscan=True))
    assert result.ok, result.failed
    s = stanzas(root)
    assert s["model-one"]["weights"] == str(scan / "model-one.safetensors")  # local files stay where they are
    # LoRAs and embeddings: no stanza, a link (or copy) where InvokeAI 2.3.5 looks; the user's files stay
    assert set(s) == {"model-one"}
    assert (root.kind_dir("lora") / "style.safetensors").is_file() and (scan / "loras" / "style.safetensors").is_file()
    assert (root.kind_dir("embedding") / "token.pt").is_file()
    assert mf.read_manifest(root, "style").kind == "lora" and mf.read_manifest(root, "token").kind == "embedding"
    assert f'--autoconvert "{scan}"' in root.init_file.read_text()
    # a copy of an installed file elsewhere in the folder is recognised by content
    shutil.copy(scan / "model-one.safetensors", scan / "loras" / "copy-of-one.safetensors")
    again, _ = run(root, InstallPlan(scan_dir=scan))
    assert again.outcomes == ()
    # the `scan` command uses the init file's folder
    assert cli.main(["--root", str(root.root), "scan", "--no-convert"]) == 0


# --- failures, removal --------------------------------------------------------------------------------


def test_good_and_garbage_lines(root, hub, file_server, capsys, monkeypatch, tmp_path):
    garbage = tmp_path / "not-a-model.safetensors"
    garbage.write_bytes(b"<html>login</html>")
    pf = tmp_path / "plan.yaml"
    pf.write_text(yaml.safe_dump({"add": [
        "test/tiny-vae",
        "this is not a source at all",
        file_server.url_for("missing.safetensors"),
        str(garbage),
        "test/no-such-repo",
    ]}))
    code = cli.main(["--root", str(root.root), "--plan", str(pf)])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    print(out, err)
    assert code == 1
    assert len(lines) == 4 and all(line.startswith("error: ") for line in lines)
    assert mf.read_manifest(root, "tiny-vae").kind == "vae"  # installed (into models/hub), no stanza
    assert set(stanzas(root)) == set()  # nothing failed got into models.yaml


def test_removal_with_purge(root, hub, catalog, capsys):
    assert run(root, InstallPlan(install_starters=("tiny-sd",)), catalog)[0].ok
    folder = root.root / "models/sd/tiny-sd"
    assert folder.is_dir()
    # removal without purge keeps the files; a later install re-registers them with 0 bytes
    assert cli.main(["--root", str(root.root), "--delete", "tiny-sd"]) == 0
    assert "tiny-sd" not in stanzas(root) and folder.is_dir()
    before = hub_bytes(hub)
    result, _ = run(root, InstallPlan(install_starters=("tiny-sd",)), catalog)
    assert result.ok and result.outcomes[0].status == "installed" and hub_bytes(hub) == before
    code = cli.main(["--root", str(root.root), "--delete", "tiny-sd", "--purge"])
    assert code == 0
    assert "tiny-sd" not in stanzas(root) and not folder.exists()
    assert root.hf_repo_dir("test/tiny-vae").is_dir()  # the VAE is a model of its own: kept
    assert mf.read_manifest(root, "tiny-sd") is None
    # the VAE (no stanza) is known by its manifest: installing it again fetches nothing
    result, _ = run(root, InstallPlan(imports=("test/tiny-vae",)))
    assert result.ok and result.outcomes[0].status == "skipped" and hub_bytes(hub) == before


# --- kill, concurrency, cancel -----------------------------------------------------------------------------


def _wait_for(handle, predicate, timeout=120):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        e = handle.poll(0.05)
        if e is not None:
            seen.append(e)
            if predicate(e, seen):
                return seen
    raise AssertionError(f"timed out; saw {seen[-5:]}")


def test_sigkill_mid_plan_then_rerun(root, hub, catalog):
    hub.faults.throttle("/test/tiny-sd/*", 8_000_000)
    handle = start_install(InstallPlan(install_starters=("tiny-sd",)), root, catalog_path=catalog, mode="process")

    def enough(e, seen):
        # a weights file of the pipeline is verified and in staging; the 14 MB UNet is still coming
        return isinstance(e, ev.FileFinished) and "/" in e.name and e.name.endswith(".safetensors")

    _wait_for(handle, enough)
    os.kill(handle.pid, signal.SIGKILL)
    result = handle.join(60)
    assert result.error and not result.ok
    before = hub.stats.served("/test/tiny-sd/*")
    stanzas(root)  # valid YAML right after the kill
    hub.faults.clear()
    again, seen2 = run(root, InstallPlan(install_starters=("tiny-sd",)), catalog)
    resumed = [(e.name, e.resumed_from) for e in seen2 if isinstance(e, ev.FileStarted) and e.resumed_from]
    assert again.ok, again.failed
    after = hub.stats.served("/test/tiny-sd/*")
    rerun = after - before
    total = mf.read_manifest(root, "tiny-sd").total_size  # what the plan needs from that repo (fp16 set)
    print(f"KILL: plan needs {total} bytes from test/tiny-sd; served before the kill {before}; served on the re-run {rerun}; resumed {resumed}")
    assert rerun < total and before + rerun >= total
    s = stanzas(root)
    assert "tiny-sd" in s and mf.read_manifest(root, "tiny-vae").state == "installed"  # the VAE: no stanza
    assert not mf.verify_manifest(root, mf.read_manifest(root, "tiny-sd"), full=True)


def test_two_installers_at_once(root, hub, file_server, tiny_checkpoints):
    shutil.copy(tiny_checkpoints["sd-1", "safetensors"], file_server.folder / "other.safetensors")
    env = {**os.environ, "INVOKEAI_INSTALL_WORKER": "process", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "invokeai_model_install", "--root", str(root.root)]
    a = subprocess.Popen(cmd + ["--add", "test/tiny-sd"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen(cmd + ["--add", file_server.url_for("other.safetensors")], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    outs = [p.communicate(timeout=300) for p in (a, b)]
    assert a.returncode == 0 and b.returncode == 0, outs
    s = stanzas(root)
    assert {"tiny-sd", "other"} <= set(s)


def test_cancel_keeps_partials(root, hub):
    hub.faults.throttle("/test/tiny-sd/*", 4_000_000)
    handle = start_install(InstallPlan(imports=("test/tiny-sd", "test/tiny-vae")), root, mode="thread")
    _wait_for(handle, lambda e, seen: isinstance(e, ev.FileProgress) and e.done > 1_000_000)
    handle.cancel()
    result = handle.join(120)
    assert result.cancelled and not result.ok
    assert [o.error for o in result.outcomes] == ["Cancelled", "Cancelled"]
    assert "tiny-sd" not in stanzas(root)
    leftovers = [p for p in root.partial_dir.rglob("*") if p.is_file()]
    assert leftovers and sum(p.stat().st_size for p in leftovers) > 0  # kept for the resume


# --- the prediction-type question -------------------------------------------------------------------------


@pytest.fixture
def sd2_file(tmp_path, tiny_checkpoints):
    p = tmp_path / "incoming" / "mystery-sd2.safetensors"
    p.parent.mkdir()
    shutil.copy(tiny_checkpoints["sd-2", "safetensors"], p)
    return p


def test_prediction_type_by_flag(root, sd2_file, capsys):
    code = cli.main(["--root", str(root.root), "--add", str(sd2_file), "--prediction-type", "v"])
    assert code == 0, capsys.readouterr().err
    s = stanzas(root)["mystery-sd2"]
    assert s["config"] == "configs/stable-diffusion/v2-inference-v.yaml" and s["width"] == 768


def test_prediction_type_by_callback(root, sd2_file):
    asked = []

    def ask(q):
        asked.append(q)
        return "epsilon"

    result, seen = run(root, InstallPlan(imports=(str(sd2_file),)), ask=ask)
    assert result.ok
    assert asked[0].kind == "prediction_type" and asked[0].choices == ("epsilon", "v", "skip")
    assert any(isinstance(e, ev.QuestionAsked) for e in seen)
    assert stanzas(root)["mystery-sd2"]["config"] == "configs/stable-diffusion/v2-inference.yaml"


def test_prediction_type_by_handle_answer(root, sd2_file):
    handle = start_install(InstallPlan(imports=(str(sd2_file),)), root, mode="thread")
    seen = _wait_for(handle, lambda e, seen: isinstance(e, ev.QuestionAsked))
    handle.answer(seen[-1].qid, "skip")
    result = handle.join(60)
    assert result.outcomes[0].status == "skipped" and "mystery-sd2" not in stanzas(root)


def test_prediction_type_non_interactive_skips_with_the_flag_named(root, sd2_file, capsys):
    code = cli.main(["--root", str(root.root), "--add", str(sd2_file)])
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "--prediction-type epsilon|v" in err
    assert "mystery-sd2" not in stanzas(root)


# --- dry run ---------------------------------------------------------------------------------------------


def test_dry_run_with_remote_items(root, hub, catalog, capsys):
    before = sorted(root.root.rglob("*"))
    code = cli.main(["--root", str(root.root), "--catalog", str(catalog), "--yes", "--dry-run", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    item = doc["items"][0]
    assert item["label"] == "tiny-sd" and item["destination"] == "models/sd/tiny-sd"
    assert item["bytes_to_fetch"] > 0 and doc["total_bytes_to_fetch"] == item["bytes_to_fetch"]
    assert sorted(root.root.rglob("*")) == before
    assert hub.stats.served("*.safetensors") == 0  # metadata only (model_index.json is read to list the parts)
    result, _ = run(root, InstallPlan(install_starters=("tiny-sd",)), catalog)
    fetched = result.fetched_bytes
    assert fetched == item["bytes_to_fetch"]
    planned = resolve_plan(InstallPlan(install_starters=("tiny-sd",)), root, catalog_path=catalog)
    assert planned[0].status == "already installed" and planned[0].bytes_to_fetch == 0


def test_scan_command_converts_like_autoconvert(root, tmp_path, tiny_checkpoints, capsys):
    folder = tmp_path / "autoconvert"
    folder.mkdir()
    shutil.copy(tiny_checkpoints["sd-1", "safetensors"], folder / "fresh.safetensors")
    assert cli.main(["--root", str(root.root), "--scan-dir", str(folder), "--autoscan", "--dry-run"]) == 0
    assert not root.init_file.read_text().count("--autoconvert")  # a dry run writes nothing
    capsys.readouterr()
    root.init_file.write_text(f'--autoconvert "{folder}"\n')
    assert cli.main(["--root", str(root.root), "scan", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(i["name"], i["status"]) for i in doc["items"]] == [("fresh", "installed")]
    s = stanzas(root)["fresh"]
    assert s["format"] == "diffusers" and (root.root / s["path"] / "model_index.json").is_file()
    # the checkpoint is known now (by its hash in the manifest): a second scan finds nothing new
    assert cli.main(["--root", str(root.root), "scan", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == []
    # verify re-hashes what was installed
    assert cli.main(["--root", str(root.root), "verify", "fresh"]) == 0


def test_damaged_install_is_repaired_in_place(root, hub):
    assert run(root, InstallPlan(imports=("test/tiny-vae",)))[0].ok
    weights = root.absolute(mf.read_manifest(root, "tiny-vae").path) / "diffusion_pytorch_model.safetensors"
    assert weights.is_file() and root.hub_dir in weights.parents  # a hub VAE lives in the HF cache
    weights.write_bytes(b"broken")
    assert cli.main(["--root", str(root.root), "verify", "tiny-vae"]) == 1
    result, seen = run(root, InstallPlan(imports=("test/tiny-vae",)))
    assert result.ok and result.outcomes[0].status == "installed" and result.fetched_bytes > 0
    assert any(isinstance(e, ev.ItemNote) and "missing or changed" in e.message for e in seen)
    assert [m.name for m in mf.all_manifests(root)] == ["tiny-vae"]  # same name, no "-2"
    assert not mf.verify_manifest(root, mf.read_manifest(root, "tiny-vae"), full=True)


def test_two_installers_same_model(root, hub):
    """Both ask for the same repo: one installs it, the other waits and finds it installed."""
    hub.faults.throttle("/test/tiny-vae/*", 4_000_000)
    results = []

    def go():
        results.append(run_plan(InstallPlan(imports=("test/tiny-vae",)), root))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(r.outcomes[0].status for r in results) == ["installed", "skipped"]
    assert [m.name for m in mf.all_manifests(root)] == ["tiny-vae"] and stanzas(root) == {}
    assert hub.stats.served("*.safetensors") == hub.file("test/tiny-vae", "diffusion_pytorch_model.safetensors").size


def test_rerun_needs_no_network(root, hub, monkeypatch):
    assert run(root, InstallPlan(imports=("test/tiny-vae",)))[0].ok
    hub.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result, _ = run(root, InstallPlan(imports=("test/tiny-vae",)))
    assert result.ok and result.outcomes[0].message == "already installed"


def test_url_of_something_that_is_not_a_model(root, file_server, tiny_extras):
    shutil.copy(tiny_extras["random.safetensors"], file_server.folder / "random.safetensors")
    result, _ = run(root, InstallPlan(imports=(file_server.url_for("random.safetensors"),)))
    assert result.outcomes[0].status == "failed" and result.outcomes[0].error == "ProbeError"
    assert "random" not in stanzas(root)
    assert not [p for p in (root.partial_dir / "staging").rglob("*") if p.is_file()]  # nothing kept for it


def _spawn_on_pty(argv, env):
    import pexpect

    return pexpect.spawn(sys.executable, ["-m", "invokeai_model_install", *argv], env={**env, "TERM": "xterm", "PYTHONPATH": str(REPO)},
                         dimensions=(30, 110), encoding="utf-8", timeout=180)


def test_terminal_run_shows_rich_progress_and_asks(root, hub, sd2_file):
    import pexpect

    env = dict(os.environ)
    child = _spawn_on_pty(["--root", str(root.root), "--add", "test/tiny-vae", str(sd2_file)], env)
    child.expect("Choose 1-3: ")
    before = child.before
    child.sendline("2")  # v-prediction
    child.expect(pexpect.EOF)
    child.close()
    text = before + child.before
    assert child.exitstatus == 0, text
    assert "overall" in text and "MB" in text  # the rich progress display
    assert "v-prediction (SD-2 768)" in text
    assert stanzas(root)["mystery-sd2"]["config"] == "configs/stable-diffusion/v2-inference-v.yaml"
    assert mf.read_manifest(root, "tiny-vae").kind == "vae"  # installed, no stanza (2.3.5 lists only main models)


def test_starter_installed_by_an_older_installer_is_not_fetched_again(root, hub, catalog):
    with Registry(root.models_yaml).transaction() as doc:
        doc.add("tiny-sd", {"description": "from InvokeAI 2.3", "repo_id": "test/tiny-sd", "format": "diffusers"})
    result, _ = run(root, InstallPlan(install_starters=("tiny-sd",)), catalog)
    assert result.ok and result.outcomes[0].status == "skipped" and "already in models.yaml" in result.outcomes[0].message
    assert hub.stats.served("*") == 0  # neither the model nor its VAE
    assert list(stanzas(root)) == ["tiny-sd"]
    planned = resolve_plan(InstallPlan(install_starters=("tiny-sd",)), root, catalog_path=catalog)
    assert planned[0].status == "already installed" and planned[0].bytes_to_fetch == 0
