"""A reference migration of a root written by this package (before issue 9) into the 2.3.5 layout.

Not used by the package: it is the executable form of /work/notes/compat235.md ("Migrating an
older root"), and the self-test of tests/test_compat235.py: with ``COMPAT235_REFERENCE_FIX=1`` the
test applies it to the root our CLI wrote before 2.3.5 runs, which shows that the assertions can
pass (only the SDXL assertion, about what the installer registers, still fails).

    python -m tests.compat235.reference_fix ROOT [--support DIR]

Rules (each one verified by running 2.3.5, see the notes):
* ``models/diffusers/<name>`` -> ``models/converted_ckpts/<name>`` (2.3.5's ``migrate_models()`` moves
  anything in ``models/diffusers``); ``path:`` rewritten.  Nothing may remain in ``models/diffusers``.
* diffusers VAE weights with the new attention names are renamed to ``query/key/value/proj_attn``.
* ``vae: {path: <diffusers VAE folder>}`` -> the folder is laid out in ``ROOT/models/hub`` as the repo
  it came from (manifest ``key: hub:<repo>``, its ``revision``) and the stanza says ``vae: {repo_id: <repo>}``.
* ``vae: {path: <file>}`` on a ``format: ckpt`` stanza -> ``vae: <file>`` (a string).
* ``type: lora`` -> the file moves to ``ROOT/loras/``; ``type: embedding`` -> ``ROOT/embeddings/``;
  their stanzas, and those of VAEs and ControlNets, are removed (2.3.5 would list them as main models).
* SDXL stanzas (``base: sdxl*``) are removed (2.3.5 cannot run them); the files are kept.
* ``--support DIR``: lay out ``DIR/<org>/<name>`` as the three support repos in ``ROOT/models/hub``
  (what ``invokeai-configure`` must download).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import yaml

from tests.compat235 import layout_helpers as lh

SUPPORT = ("openai/clip-vit-large-patch14", "CompVis/stable-diffusion-safety-checker", "stabilityai/stable-diffusion-2")


def _manifest_for(root: Path, rel: str) -> dict | None:
    for m in (root / "models" / ".manifests").glob("*.json"):
        try:
            doc = json.loads(m.read_text())
        except ValueError:
            continue
        if doc.get("path") == rel:
            return doc
    return None


def _rename_vae_keys(folder: Path) -> None:
    for f in (folder / "vae").glob("*.safetensors") if (folder / "vae").is_dir() else folder.glob("*.safetensors"):
        lh.legacy_vae_keys(f)


def apply(root: Path, support: Path | None = None) -> list[str]:
    root = Path(root)
    done: list[str] = []
    yml = root / "configs" / "models.yaml"
    doc = yaml.safe_load(yml.read_text()) or {}
    out: dict = {}
    for name, s in doc.items():
        if not isinstance(s, dict):
            out[name] = s
            continue
        kind = s.get("type")
        path = root / s["path"] if s.get("path") and not Path(str(s["path"])).is_absolute() else Path(str(s.get("path", "")))
        if kind in ("lora", "embedding"):
            dest_dir = root / ("loras" if kind == "lora" else "embeddings")
            dest_dir.mkdir(exist_ok=True)
            if path.is_file():
                shutil.move(str(path), dest_dir / path.name)
            done.append(f"{name}: {kind} moved to {dest_dir.name}/, stanza removed")
            continue
        if kind in ("vae", "controlnet"):
            done.append(f"{name}: {kind} stanza removed")
            continue
        if str(s.get("base", "")).startswith("sdxl"):
            done.append(f"{name}: SDXL stanza removed")
            continue
        if s.get("format") == "diffusers" and s.get("path"):
            if path.parent == root / "models" / "diffusers":
                dest = root / "models" / "converted_ckpts" / path.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(path), dest)
                s["path"] = dest.relative_to(root).as_posix()
                path = dest
                done.append(f"{name}: moved to {s['path']}")
            _rename_vae_keys(path)
        vae = s.get("vae")
        if isinstance(vae, dict) and vae.get("path"):
            vpath = root / vae["path"]
            if s.get("format") == "ckpt":
                s["vae"] = vae["path"]
            elif vpath.is_dir():
                m = _manifest_for(root, vae["path"]) or {}
                repo = str(m.get("key", "")).removeprefix("hub:").split(":")[0].split("@")[0] or f"local/{vpath.name}"
                _rename_vae_keys(vpath)
                lh.place_in_hf_cache(vpath, root / "models" / "hub", repo, commit=m.get("revision"), symlinks=False)
                s["vae"] = {"repo_id": repo}
                done.append(f"{name}: vae -> {{repo_id: {repo}}} (HF cache)")
        out[name] = s
    yml.write_text(yaml.safe_dump(out, sort_keys=False))
    d = root / "models" / "diffusers"
    if d.is_dir() and not any(d.iterdir()):
        d.rmdir()
    if support is not None:
        for repo in SUPPORT:
            lh.place_in_hf_cache(Path(support) / repo, root / "models" / "hub", repo)
        done.append("support models placed in models/hub")
    return done


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("--support", type=Path)
    a = ap.parse_args()
    print("\n".join(apply(a.root, a.support)))
