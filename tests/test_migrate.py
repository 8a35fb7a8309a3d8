"""A root written by an earlier version of this package is moved to the InvokeAI 2.3.5 layout by a re-run.

The old root is produced by the OLD code itself: the package as it was on main before issue 9
(commit OLD_COMMIT, kept as ``tests/data/pre-issue9-package.tar.gz``, a ``git archive`` of it) runs against the
stand-in hub and file server, exactly as a user's earlier installer did.  Then today's CLI re-runs on
that root.  Checked: files moved (nothing under ``models/diffusers``, LoRAs in ``loras/``, embeddings in
``embeddings/``, the starter's VAE in the HF cache), stanzas rewritten (main models only, ``vae:
{repo_id}``), ``models.yaml.orig`` kept, manifests follow the moves and verify, nothing downloaded
twice, a second re-run changes nothing - and, when the InvokeAI 2.3.5 venv is there (always in CI),
2.3.5's own ModelManager loads the migrated main models.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from invokeai_model_install.root import manifest as mf
from invokeai_model_install.root.layout import RootLayout
from tests.compat235 import layout_helpers as lh

REPO = Path(__file__).resolve().parent.parent
#: main just before issue 9 (the layout with models/diffusers, models/lora, VAE/LoRA/embedding stanzas)
OLD_COMMIT = "d3459ba932520667b7dfab8ded7dc5f48a5c9a02"
OLD_PACKAGE = Path(__file__).resolve().parent / "data" / "pre-issue9-package.tar.gz"

CATALOG = """
tiny-sd:
  description: Tiny SD-1 starter with its own VAE repo
  repo_id: test/tiny-sd
  format: diffusers
  vae:
    repo_id: test/tiny-vae
  recommended: true
  default: true
  size: 60000000
"""


@pytest.fixture(scope="module")
def old_code(tmp_path_factory) -> Path:
    """The package as it was before issue 9 (commit OLD_COMMIT), unpacked from a tarball kept in tests/data.

    The tarball is ``git archive OLD_COMMIT invokeai_model_install configs | gzip``: kept in the tree rather than
    read from git history so the test also runs in a shallow clone (CI may clone with --depth 1).
    """
    dest = tmp_path_factory.mktemp("old-package")
    with tarfile.open(OLD_PACKAGE, "r:gz") as tf:
        tf.extractall(dest, filter="data")
    return dest


def old_cli(old: Path, args: list[str], env: dict) -> subprocess.CompletedProcess:
    env = {**env, "PYTHONPATH": str(old)}
    code = "import sys; from invokeai_model_install.app.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=str(old), capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)


def new_cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    code = "import sys; from invokeai_model_install.app.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=str(REPO), capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)


def tree(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def test_rerun_migrates_a_root_the_old_code_wrote(old_code, hub_server, file_server, tiny_models, tiny_checkpoints,
                                                   tiny_extras, tmp_path):
    # hub-era starter (old VAE names, text_model. prefix), as the real SD repos are
    hub_server.add_repo("test/tiny-sd", lh.as_hub_era_folder(tiny_models["sd-1"], tmp_path / "hub-sd"))
    hub_server.add_repo("test/tiny-vae", lh.as_hub_era_folder(tiny_models["sd-1-inpaint"], tmp_path / "hub-inp") / "vae")
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    shutil.copy(tiny_extras["lora-sd-1.safetensors"], file_server.folder / "web-lora.safetensors")
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    emb = shutil.copy(tiny_extras["embedding.pt"], incoming / "my-token.pt")
    vae_file = shutil.copy(tiny_extras["vae.safetensors"], incoming / "my-vae.safetensors")
    sdxl = shutil.copytree(tiny_models["sdxl"], incoming / "my-sdxl")
    conv = shutil.copy(tiny_checkpoints["sd-1", "safetensors"], incoming / "conv-me.safetensors")
    root = tmp_path / "invokeai"
    env = {k: v for k, v in os.environ.items() if k not in ("INVOKEAI_ROOT", "HF_HUB_OFFLINE")}

    # 1. the OLD installer fills the root
    steps = [
        (["--root", str(root), "--create-root", "--catalog", str(catalog), "--yes"], "starter"),
        (["--root", str(root), "--add", file_server.url_for("web-lora.safetensors"), str(emb), str(vae_file), str(sdxl)], "kinds"),
        (["--root", str(root), "--add", str(conv), "--convert", "--full-precision"], "convert"),
    ]
    for args, what in steps:
        p = old_cli(old_code, args, env)
        assert p.returncode == 0, f"old code, {what}: {p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    layout = RootLayout(root)
    old_yaml = layout.models_yaml.read_text()
    old = yaml.safe_load(old_yaml)
    # what the old code wrote (the layout 2.3.5 cannot use)
    assert old["tiny-sd"]["path"] == "models/diffusers/tiny-sd" and old["tiny-sd"]["vae"] == {"path": "models/vae/tiny-vae"}
    assert old["conv-me"]["path"] == "models/diffusers/conv-me"
    assert {old[n].get("type") for n in ("tiny-vae", "web-lora", "my-token", "my-vae")} == {"vae", "lora", "embedding"}
    assert old["my-sdxl"]["base"] == "sdxl"
    assert (root / "models/lora/web-lora.safetensors").is_file()
    served = hub_server.stats.served("/*")
    old_files = tree(root)

    # 2. today's installer re-runs on it (the same --yes a user would run again)
    p = new_cli(["--root", str(root), "--catalog", str(catalog), "--yes", "--json"], env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    doc = json.loads(p.stdout)
    assert doc["fetched_bytes"] == 0 and hub_server.stats.served("/*") == served  # nothing downloaded twice
    assert [i["status"] for i in doc["items"]] == ["skipped"]

    new = yaml.safe_load(layout.models_yaml.read_text())
    # main models only; every file where 2.3.5 looks
    assert set(new) == {"tiny-sd", "conv-me"}
    assert new["tiny-sd"]["path"] == "models/sd/tiny-sd" and new["tiny-sd"]["vae"] == {"repo_id": "test/tiny-vae"}
    assert new["conv-me"]["path"] == "models/converted_ckpts/conv-me"
    assert new["tiny-sd"]["default"] is True and new["tiny-sd"]["description"] == old["tiny-sd"]["description"]
    assert not layout.legacy_diffusers_dir.exists()
    assert not (root / "models/lora").exists() and (root / "loras/web-lora.safetensors").is_file()
    assert (root / "embeddings/my-token.pt").is_file() and Path(emb).is_file()  # the user's own file stays
    snap = lh.repo_cache_dir(layout.hub_dir, "test/tiny-vae")
    commit = (snap / "refs" / "main").read_text()
    assert (snap / "snapshots" / commit / "diffusion_pytorch_model.safetensors").is_file()
    assert Path(sdxl, "model_index.json").is_file()  # SDXL: unregistered, files kept
    # the converted model's VAE now has the names diffusers 0.16.1 loads
    from safetensors import safe_open

    with safe_open(str(root / "models/converted_ckpts/conv-me/vae/diffusion_pytorch_model.safetensors"), "pt") as fh:
        keys = set(fh.keys())
    assert "encoder.mid_block.attentions.0.query.weight" in keys and not any(".to_q." in k for k in keys)
    # nothing lost: every file of the old root is somewhere in the new one (same size), models.yaml kept
    new_sizes = sorted(tree(root).values())
    for rel, size in old_files.items():
        if rel.startswith(("models/.partial", "configs/models.yaml")):
            continue
        assert size in new_sizes or rel.startswith("models/.manifests") or "vae" in rel, rel
    assert (root / "configs/models.yaml.orig").read_text() == old_yaml
    assert (root / "configs/models.yaml.pre-2.3-layout").read_text() == old_yaml
    assert (root / ".version").read_text().strip() == "2.3.5.post2"
    # manifests follow the moves and still verify (renamed VAE weights re-hashed)
    for m in mf.all_manifests(layout):
        assert not mf.verify_manifest(layout, m, full=True), (m.name, m.path)
        assert "models/diffusers" not in m.path and not m.path.startswith("models/lora")
    assert {m.name: bool(m.stanza) for m in mf.all_manifests(layout)} == {
        "tiny-sd": True, "conv-me": True, "tiny-vae": False, "web-lora": False, "my-token": False, "my-vae": False,
        "my-sdxl": False}
    # `list` still shows the unregistered ones, from their manifests
    p = new_cli(["--root", str(root), "list", "--json"], env)
    listed = {r["name"]: r for r in json.loads(p.stdout)}
    assert set(listed) == {"tiny-sd", "conv-me", "tiny-vae", "web-lora", "my-token", "my-vae", "my-sdxl"}
    assert listed["web-lora"]["registered"] is False and listed["web-lora"]["kind"] == "lora"

    # 3. a second re-run: nothing left to migrate, nothing changes
    before = tree(root)
    p = new_cli(["--root", str(root), "--catalog", str(catalog), "--yes", "--json"], env)
    assert p.returncode == 0 and json.loads(p.stdout)["fetched_bytes"] == 0
    after = tree(root)
    assert {k: v for k, v in after.items() if not k.startswith("models/.manifests")} == \
        {k: v for k, v in before.items() if not k.startswith("models/.manifests")}

    # 4. InvokeAI 2.3.5's own code over the migrated root (CI always has its venv)
    venv = Path(os.environ.get("INVOKEAI235_VENV") or Path.home() / ".cache/invokeai-model-install/venv-invokeai-2.3.5")
    if not (venv / "bin" / "python").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"the InvokeAI 2.3.5 venv is missing at {venv}; .ci/run builds it", pytrace=False)
        return
    drv_env = {k: v for k, v in os.environ.items() if k not in ("HF_HOME", "XDG_CACHE_HOME", "HF_ENDPOINT")}
    out = tmp_path / "report.json"
    proc = subprocess.run([str(venv / "bin" / "python"), str(REPO / "tests/compat235/driver.py"), "--root", str(root),
                           "--out", str(out), "--quiet"], env=drv_env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=900)
    report = json.loads(out.read_text())
    assert report["migrate"]["asked"] == [] and not any(report["migrate"].get("changes", {}).values()), report["migrate"]
    for name in ("tiny-sd", "conv-me"):
        assert report["models"][name]["loaded"], (name, report["models"][name].get("error"), proc.stderr[-2000:])
    assert report["non_main_listed"] == []
    assert report["loras"]["listed"] and report["embeddings"]["files"]
    # the old embedding lacked sd_checkpoint(_name): completed, so 2.3.5 parses it instead of failing every model
    assert not [f for f in report["failures"] if "embedding" in f.lower()], report["failures"]
