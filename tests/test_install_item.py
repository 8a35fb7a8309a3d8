"""One item's pipeline with local files (no network): placement, stanzas, names, safety, idempotency.

Remote items (hub, URL) are covered in tests/test_end_to_end.py against the loopback servers.
"""

from __future__ import annotations

import os
import pickle
import shutil
from types import SimpleNamespace

import pytest
import yaml

from invokeai_model_install import events as ev
from invokeai_model_install.root import manifest as mf
from invokeai_model_install.app.configure import create_layout
from invokeai_model_install.install.identity import source_key
from invokeai_model_install.install.placement import single_model_file as _single_model_file
from invokeai_model_install.install.stanza import legacy_config
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.root.registry import Registry
from invokeai_model_install.install.run import run_plan


@pytest.fixture
def root(tmp_path):
    layout = RootLayout(tmp_path / "invokeai")
    create_layout(layout)
    return layout


def stanzas(layout):
    return yaml.safe_load(layout.models_yaml.read_text()) or {}


def run(layout, *lines, **kw):
    seen = []
    result = run_plan(InstallPlan(imports=tuple(str(x) for x in lines), **kw), layout, on_event=seen.append)
    return result, seen


@pytest.mark.parametrize(
    "base, variant, prediction, config, size",
    [
        ("sd-1", "normal", None, "v1-inference.yaml", 512),
        ("sd-1", "inpaint", None, "v1-inpainting-inference.yaml", 512),
        ("sd-2", "normal", "v", "v2-inference-v.yaml", 768),
        ("sd-2", "normal", "epsilon", "v2-inference.yaml", 512),
        ("sdxl", "normal", None, "sd_xl_base.yaml", 1024),
        ("sdxl-refiner", "normal", None, "sd_xl_refiner.yaml", 1024),
    ],
)
def test_legacy_config_choice(base, variant, prediction, config, size):
    assert legacy_config(SimpleNamespace(base=base, variant=variant), prediction) == (config, size)


def test_single_model_file():
    assert _single_model_file(["model.safetensors"]) == "model.safetensors"
    assert _single_model_file(["config.json", "diffusion_pytorch_model.safetensors"]) is None
    assert _single_model_file(["README.md", "x.ckpt"]) == "x.ckpt"
    assert _single_model_file(["a.ckpt", "b.ckpt"]) is None


def test_url_key_drops_tokens():
    from invokeai_model_install.net import sources

    a = source_key(sources.parse_source("https://civitai.com/api/download/models/42?type=Model&token=SECRET"))
    assert "SECRET" not in a and "type=Model" in a


def test_local_checkpoint_stays_in_place_then_already_installed(root, tmp_path, tiny_checkpoints):
    src = tmp_path / "mine" / "my-model.safetensors"
    src.parent.mkdir()
    shutil.copy(tiny_checkpoints["sd-1", "safetensors"], src)
    result, seen = run(root, src)
    assert result.ok, result.failed
    s = stanzas(root)["my-model"]
    assert s["weights"] == str(src) and s["format"] == "ckpt" and s["config"] == "configs/stable-diffusion/v1-inference.yaml"
    assert src.exists() and not any(root.kind_dir("main").iterdir())
    kinds = [type(e).__name__ for e in seen]
    assert kinds.index("ItemStarted") < kinds.index("ItemVerified") < kinds.index("ItemRegistered")
    again, _ = run(root, src)
    assert again.outcomes[0].status == "skipped" and again.outcomes[0].message == "already installed"
    assert list(stanzas(root)) == ["my-model"]


def test_name_clash_gets_a_suffix_never_overwrites(root, tmp_path, tiny_checkpoints):
    with Registry(root.models_yaml).transaction() as doc:
        doc.add("my-model", {"description": "someone else's", "path": "/x", "format": "diffusers"})
    src = tmp_path / "my-model.safetensors"
    shutil.copy(tiny_checkpoints["sd-1", "safetensors"], src)
    assert run(root, src)[0].ok
    s = stanzas(root)
    assert s["my-model"]["description"] == "someone else's" and s["my-model-2"]["weights"] == str(src)


def test_lora_vae_embedding_kinds(root, tmp_path, tiny_extras):
    for name in ("lora-sd-1.safetensors", "vae.safetensors", "embedding.pt"):
        shutil.copy(tiny_extras[name], tmp_path / name)
    result, _ = run(root, *(tmp_path / n for n in ("lora-sd-1.safetensors", "vae.safetensors", "embedding.pt")))
    assert result.ok, result.failed
    # a 2.3 root lists only main models (2.3.5 would offer any other stanza as a main model)
    assert stanzas(root) == {}
    kinds = {m.name: (m.kind, m.path) for m in mf.all_manifests(root)}
    assert kinds == {"lora-sd-1": ("lora", "loras/lora-sd-1.safetensors"), "vae": ("vae", str(tmp_path / "vae.safetensors")),
                     "embedding": ("embedding", "embeddings/embedding.pt")}
    # LoRA and embedding are linked (or copied) where 2.3.5 looks; the user's files stay
    assert (root.kind_dir("lora") / "lora-sd-1.safetensors").read_bytes() == (tmp_path / "lora-sd-1.safetensors").read_bytes()
    assert (root.kind_dir("embedding") / "embedding.pt").is_file() and (tmp_path / "embedding.pt").is_file()
    assert all(o.message for o in result.outcomes)  # each says where it is and how 2.3.5 uses it
    # re-run: already installed, nothing placed twice
    again, _ = run(root, *(tmp_path / n for n in ("lora-sd-1.safetensors", "vae.safetensors", "embedding.pt")))
    assert [o.status for o in again.outcomes] == ["skipped"] * 3
    assert sorted(p.name for p in root.kind_dir("lora").iterdir()) == ["lora-sd-1.safetensors"]


def test_sdxl_is_not_registered_in_a_23_root_unless_insisted(root, tmp_path, tiny_models):
    folder = shutil.copytree(tiny_models["sdxl"], tmp_path / "my-sdxl")
    result, _ = run(root, folder)
    o = result.outcomes[0]
    assert o.status == "skipped" and "InvokeAI 2.3.5 cannot run it" in o.message and "--download-unsupported" in o.message
    assert stanzas(root) == {} and not list(mf.all_manifests(root))
    result, _ = run(root, folder, download_unsupported=True)
    o = result.outcomes[0]
    assert o.status == "installed" and stanzas(root) == {}
    m = mf.read_manifest(root, o.name)
    assert m.kind == "main" and not m.stanza and "cannot run it" in o.message


def test_unknown_file_fails_and_is_not_registered(root, tiny_extras):
    result, seen = run(root, tiny_extras["random.safetensors"])
    assert result.outcomes[0].status == "failed" and result.outcomes[0].error == "ProbeError"
    assert stanzas(root) == {} or "random" not in stanzas(root)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_dangerous_pickle_refused_and_left_alone(root, tmp_path):
    bad = tmp_path / "evil.ckpt"
    bad.write_bytes(pickle.dumps({"state_dict": _Evil()}))
    result, seen = run(root, bad)
    o = result.outcomes[0]
    assert o.status == "failed" and o.error == "UnsafeFileError" and o.hint
    assert bad.exists()  # a local file is the user's: refused, not deleted
    assert "evil" not in stanzas(root)


def test_pickle_renamed_json_inside_a_diffusers_folder_is_refused(root, tmp_path, tiny_models):
    """Files are judged by content, not name: a pickle payload named .json is still refused."""
    folder = tmp_path / "sneaky-model"
    shutil.copytree(tiny_models["sd-1"], folder)
    (folder / "unet" / "extra.json").write_bytes(pickle.dumps({"state_dict": _Evil()}))
    result, seen = run(root, folder)
    o = result.outcomes[0]
    assert o.status == "failed" and o.error == "UnsafeFileError"
    assert "extra.json" in o.message
    assert "sneaky-model" not in stanzas(root)


def test_local_convert_to_diffusers(root, tmp_path, tiny_checkpoints):
    src = tmp_path / "conv-me.safetensors"
    shutil.copy(tiny_checkpoints["sd-1", "safetensors"], src)
    result, seen = run(root, src, convert=True, precision="fp32")
    assert result.ok, result.failed
    s = stanzas(root)["conv-me"]
    assert s["path"] == "models/converted_ckpts/conv-me" and s["format"] == "diffusers"
    assert src.exists()  # the original stays
    m = mf.read_manifest(root, "conv-me")
    assert dict(m.source_sha256) == {str(src): mf.sha256_file(src)}
    assert any(isinstance(e, ev.ItemConverted) for e in seen)
    # converting again: already installed
    assert run(root, src, convert=True)[0].outcomes[0].status == "skipped"


def test_placed_but_not_marked_installed_finishes_without_duplicates(root, tmp_path, tiny_checkpoints):
    """A kill between the models.yaml write and the manifest update: the re-run completes it."""
    import dataclasses

    src = tmp_path / "lora.safetensors"
    shutil.copy(tiny_checkpoints["sd-1", "safetensors"], src)
    assert run(root, src)[0].ok
    m = mf.read_manifest(root, "lora")
    mf.write_manifest(root, dataclasses.replace(m, state="placed"))
    result, _ = run(root, src)
    assert result.ok and result.outcomes[0].name == "lora"
    assert list(stanzas(root)) == ["lora"] and mf.read_manifest(root, "lora").state == "installed"
    # and a stanza removed by hand (files kept) is registered again from the manifest
    with Registry(root.models_yaml).transaction() as doc:
        doc.remove("lora")
    result, _ = run(root, src)
    assert result.outcomes[0].status == "installed" and list(stanzas(root)) == ["lora"]


def test_cancel_during_conversion_stops_between_tensors(root, tmp_path, tiny_checkpoints):
    """A cancel that arrives while the first component converts stops before the next one starts."""
    import threading

    src = tmp_path / "conv-cancel.safetensors"
    shutil.copy(tiny_checkpoints["sd-1", "safetensors"], src)
    cancel = threading.Event()
    details: list[str] = []

    def on_event(event):
        if isinstance(event, ev.StageChanged) and event.stage == "convert":
            details.append(event.detail)
            if "(1/" in event.detail:
                cancel.set()

    result = run_plan(InstallPlan(imports=(str(src),), convert=True, precision="fp32"), root,
                      on_event=on_event, cancel=cancel)
    assert any("(1/" in d for d in details)
    assert not any("(2/" in d for d in details), details  # the converter itself saw the cancel
    assert not result.ok and result.cancelled
    assert "conv-cancel" not in stanzas(root)
    assert not (root.converted_dir / "conv-cancel").exists()
    assert src.exists()
