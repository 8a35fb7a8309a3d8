"""convert.convert_checkpoint: single file -> diffusers, offline, exact, atomic.

Round trips use the tiny models of tests/plugin_models.py: diffusers folder -> the tests' own
single-file writer (tests/modelgen.py, itself checked against diffusers) -> our converter ->
diffusers folder, which must hold the ORIGINAL weights bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from invokeai_model_install.convert import checkpoint as convert
from invokeai_model_install.convert import options, shape_checks, skeletons, tensors, writer

from invokeai_model_install import events
from invokeai_model_install.errors import ConversionError, QuestionUnanswered, UnsafeFileError, UsageError
from tests import modelgen

COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_same_weights(original: Path, converted: Path, *, dtype=None, components=COMPONENTS) -> int:
    import torch

    compared = 0
    for comp in components:
        if not (original / comp).is_dir():
            assert not (converted / comp).exists(), comp
            continue
        a, b = modelgen._load(original / comp), modelgen._load(converted / comp)
        if comp == "vae":  # we write the mid-block attention as diffusers 0.16.1 (InvokeAI 2.3.5) names it
            from invokeai_model_install.convert.ldm_keys import legacy_vae_attention_name

            a = {legacy_vae_attention_name(k): v for k, v in a.items()}
        assert a.keys() == b.keys(), (comp, sorted(set(a) ^ set(b))[:5])
        for key, want in a.items():
            got = b[key]
            if dtype is not None:
                assert got.dtype == dtype, (comp, key, got.dtype)
                want = want.to(dtype)
            assert torch.equal(got, want), f"{comp}: {key} differs"
            compared += 1
    return compared


def _model_config(cls_name: str, path: Path) -> dict:
    """A component's config as the model class sees it (defaults filled in)."""
    import diffusers
    import torch

    cls = getattr(diffusers, cls_name)
    doc = json.loads(path.read_text())
    with torch.device("meta"):
        model = cls.from_config({k: v for k, v in doc.items() if not k.startswith("_")})
    return {k: v for k, v in dict(model.config).items() if not k.startswith("_")}


TEXT_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
             "max_position_embeddings", "hidden_act", "architectures", "layer_norm_eps")


def _assert_same_configs(original: Path, converted: Path) -> None:
    assert _model_config("UNet2DConditionModel", original / "unet" / "config.json") == \
        _model_config("UNet2DConditionModel", converted / "unet" / "config.json")
    assert _model_config("AutoencoderKL", original / "vae" / "config.json") == \
        _model_config("AutoencoderKL", converted / "vae" / "config.json")
    for te in ("text_encoder", "text_encoder_2"):
        if (original / te).is_dir():
            a = json.loads((original / te / "config.json").read_text())
            b = json.loads((converted / te / "config.json").read_text())
            keys = TEXT_KEYS + (("projection_dim",) if a["architectures"] == ["CLIPTextModelWithProjection"] else ())
            assert {k: a.get(k) for k in keys} == {k: b.get(k) for k in keys}, te
    for rel in ("scheduler/scheduler_config.json", "model_index.json"):
        a = json.loads((original / rel).read_text())
        b = json.loads((converted / rel).read_text())
        a.pop("_diffusers_version", None)
        b.pop("_diffusers_version", None)
        assert a == b, rel
    for tok in ("tokenizer", "tokenizer_2"):
        assert (original / tok).is_dir() == (converted / tok).is_dir()
        if (original / tok).is_dir():
            for f in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
                assert (original / tok / f).read_bytes() == (converted / tok / f).read_bytes(), f"{tok}/{f}"


def _legacy_names(sd: dict) -> dict:
    """A diffusers VAE state dict with the mid-block attention named as we write it (diffusers 0.16.1 names)."""
    from invokeai_model_install.convert.ldm_keys import legacy_vae_attention_name

    return {legacy_vae_attention_name(k): v for k, v in sd.items()}


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".converting-" in p.name)


# --------------------------------------------------------------------------------- round trips

ROUND_TRIPS = [
    ("sd-1", "safetensors", None),
    ("sd-1-inpaint", "safetensors", None),
    ("sd-2", "safetensors", "epsilon"),
    ("sd-2-v", "ckpt", "v"),
    ("sd-2-inpaint", "ckpt", None),
    ("sdxl", "safetensors", None),
    ("sdxl-inpaint", "safetensors", None),
    ("sdxl-refiner", "ckpt", None),
]


@pytest.mark.parametrize("kind,fmt,answer", ROUND_TRIPS)
def test_round_trip_is_exact_and_loads_offline(kind, fmt, answer, tiny_models, tiny_checkpoints, tmp_path,
                                               no_network):
    import diffusers

    src = tiny_checkpoints[kind, fmt]
    before = _sha(src)
    seen: list = []
    out = convert.convert_checkpoint(src, tmp_path / "out", precision="fp32", prediction_type=answer,
                                     on_event=seen.append)
    assert out == tmp_path / "out"
    assert _assert_same_weights(tiny_models[kind], out) > 400
    _assert_same_configs(tiny_models[kind], out)
    assert _sha(src) == before  # the original is only read
    assert _leftovers(tmp_path) == []
    assert any(isinstance(e, events.ItemConverted) and e.path == str(out) for e in seen)
    assert any(isinstance(e, events.StageChanged) and e.stage == "convert" for e in seen)
    assert all(p.suffix != ".bin" for p in out.rglob("*"))  # safetensors weights only
    # the VAE carries the names diffusers 0.16.1 (InvokeAI 2.3.5) loads; current diffusers loads them too,
    # into the same weights as the original model's (tests/test_compat235.py loads them in 2.3.5 itself)
    vae_keys = modelgen._load(out / "vae").keys()
    assert {f"encoder.mid_block.attentions.0.{n}.weight" for n in ("query", "key", "value", "proj_attn")} <= vae_keys
    assert not any(".to_q." in k or ".to_out." in k for k in vae_keys)
    pipe = diffusers.DiffusionPipeline.from_pretrained(str(out), local_files_only=True)
    assert type(pipe).__name__ == json.loads((out / "model_index.json").read_text())["_class_name"]
    import torch

    original_vae = diffusers.AutoencoderKL.from_pretrained(str(tiny_models[kind] / "vae"), local_files_only=True)
    loaded, want_sd = pipe.vae.state_dict(), original_vae.state_dict()
    assert loaded.keys() == want_sd.keys() and all(torch.equal(loaded[k], want_sd[k]) for k in want_sd)
    want = "v_prediction" if kind == "sd-2-v" else "epsilon"
    assert pipe.scheduler.config.prediction_type == want


def test_loads_in_a_fresh_offline_process_with_an_empty_hf_cache(tiny_checkpoints, tmp_path):
    out = convert.convert_checkpoint(tiny_checkpoints["sd-1", "safetensors"], tmp_path / "out", precision="fp16")
    empty_home = tmp_path / "hf-home"
    empty_home.mkdir()
    code = textwrap.dedent(f"""
        import torch, diffusers
        pipe = diffusers.DiffusionPipeline.from_pretrained({str(out)!r}, local_files_only=True, dtype=torch.float16)
        tok = pipe.tokenizer
        assert len(tok) == 49408 and tok.model_max_length == 77, (len(tok), tok.model_max_length)
        assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
        assert pipe.unet.dtype == torch.float16
        print("LOADED", type(pipe).__name__)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(empty_home), HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               HF_ENDPOINT="http://127.0.0.1:9")  # anything that did try the network would fail fast
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LOADED StableDiffusionPipeline" in proc.stdout
    assert not any(empty_home.rglob("*.safetensors"))  # nothing fetched into the cache


def test_ckpt_with_ema_and_lightning_callbacks_uses_ema(tiny_models, tiny_checkpoints, tmp_path):
    src = tiny_checkpoints["sd-1", "ckpt", "ema", "lightning", "step=470000"]
    notes: list = []
    out = convert.convert_checkpoint(src, tmp_path / "out", precision="fp32", on_event=notes.append)
    # the EMA copies hold the folder's weights; the plain ones are shifted by +1
    _assert_same_weights(tiny_models["sd-1"], out)
    assert any(isinstance(e, events.ItemNote) and "EMA" in e.message for e in notes)


def test_safetensors_with_ema_uses_ema(tiny_models, tiny_checkpoints, tmp_path):
    out = convert.convert_checkpoint(tiny_checkpoints["sdxl", "safetensors", "ema"], tmp_path / "out",
                                     precision="fp32")
    _assert_same_weights(tiny_models["sdxl"], out, components=("unet",))


def test_fp16_output(tiny_models, tiny_checkpoints, tmp_path):
    import torch
    from safetensors import safe_open

    out = convert.convert_checkpoint(tiny_checkpoints["sdxl", "ckpt"], tmp_path / "out", precision="fp16")
    _assert_same_weights(tiny_models["sdxl"], out, dtype=torch.float16)
    with safe_open(str(out / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt"}
    assert json.loads((out / "text_encoder_2" / "config.json").read_text())["dtype"] == "float16"


@pytest.mark.parametrize("stored,precision", [("float16", "fp32"), ("bfloat16", "fp32"), ("bfloat16", "fp16")])
def test_half_precision_inputs(stored, precision, tiny_models, tmp_path):
    """fp16/bf16 checkpoints convert to the asked precision with exactly torch's cast of the stored values."""
    import torch
    from safetensors.torch import load_file, save_file

    dtype = getattr(torch, stored)
    want = {"fp32": torch.float32, "fp16": torch.float16}[precision]
    src32 = modelgen.write_single_file(tiny_models["sd-1"], tmp_path / "a.safetensors")
    low = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in load_file(str(src32)).items()}
    save_file(low, str(tmp_path / "low.safetensors"))
    out = convert.convert_checkpoint(tmp_path / "low.safetensors", tmp_path / "out", precision=precision)
    a = modelgen._load(tiny_models["sd-1"] / "unet")
    b = modelgen._load(out / "unet")
    assert all(b[k].dtype == want and torch.equal(b[k], a[k].to(dtype).to(want)) for k in a)


# --------------------------------------------------------------------------------- prediction type


def _copy(src: Path, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(src, folder / name))


def test_sd2_undecided_asks_and_leaves_nothing(tiny_checkpoints, tmp_path):
    src = _copy(tiny_checkpoints["sd-2", "safetensors"], tmp_path / "in", "model.safetensors")
    with pytest.raises(QuestionUnanswered) as info:
        convert.convert_checkpoint(src, tmp_path / "out")
    assert "model.safetensors" in info.value.one_line() and "--prediction-type" in info.value.one_line()
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []
    out = convert.convert_checkpoint(src, tmp_path / "out", prediction_type="epsilon")
    sched = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert sched["prediction_type"] == "epsilon"
    assert json.loads((out / "unet" / "config.json").read_text())["sample_size"] == 64


def test_sd2_answer_v_sets_v_prediction_and_768_skeleton(tiny_checkpoints, tmp_path):
    out = convert.convert_checkpoint(tiny_checkpoints["sd-2", "ckpt"], tmp_path / "out", prediction_type="v")
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == "v_prediction"
    unet = json.loads((out / "unet" / "config.json").read_text())
    assert unet["sample_size"] == 96 and unet["upcast_attention"] is True


@pytest.mark.parametrize("step,want", [(110000, "v_prediction"), (220000, "epsilon")])
def test_sd2_global_step_decides(step, want, tiny_checkpoints, tmp_path):
    out = convert.convert_checkpoint(tiny_checkpoints["sd-2", "ckpt", f"step={step}"], tmp_path / "out")
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == want


def test_companion_yaml_v_overrides(tiny_checkpoints, tmp_path):
    src = _copy(tiny_checkpoints["sd-2", "safetensors"], tmp_path / "in", "my-model.safetensors")
    (tmp_path / "in" / "my-model.yaml").write_text(textwrap.dedent("""
        model:
          target: ldm.models.diffusion.ddpm.LatentDiffusion
          params:
            parameterization: "v"
            scale_factor: 0.18215
            unet_config:
              params:
                num_head_channels: 64
                use_linear_in_transformer: true
                context_dim: 1024
            cond_stage_config:
              params:
                layer: "penultimate"
    """))
    notes: list = []
    out = convert.convert_checkpoint(src, tmp_path / "out", precision="fp32", on_event=notes.append)
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == "v_prediction"
    assert any(isinstance(e, events.ItemNote) and "my-model.yaml" in e.message for e in notes)


def test_companion_yaml_without_v_means_epsilon_and_explicit_answer_wins(tiny_checkpoints, tmp_path):
    src = _copy(tiny_checkpoints["sd-2", "safetensors"], tmp_path / "in", "m.safetensors")
    (tmp_path / "in" / "m.yaml").write_text("model:\n  params:\n    linear_start: 0.00085\n")
    out = convert.convert_checkpoint(src, tmp_path / "out")
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == "epsilon"
    out2 = convert.convert_checkpoint(src, tmp_path / "out2", prediction_type="v")
    assert json.loads((out2 / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == "v_prediction"


def test_sgm_yaml_with_v_scaling_means_v(tiny_checkpoints, tmp_path):
    yaml_path = tmp_path / "sdxl-v.yaml"
    yaml_path.write_text(textwrap.dedent("""
        model:
          target: sgm.models.diffusion.DiffusionEngine
          params:
            denoiser_config:
              target: sgm.modules.diffusionmodules.denoiser.DiscreteDenoiser
              params:
                scaling_config:
                  target: sgm.modules.diffusionmodules.denoiser_scaling.VScaling
            network_config:
              params:
                num_head_channels: 64
    """))
    out = convert.convert_checkpoint(tiny_checkpoints["sdxl", "safetensors"], tmp_path / "out", config_yaml=yaml_path)
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == "v_prediction"


def test_explicit_config_yaml(tiny_checkpoints, tmp_path):
    yaml_path = tmp_path / "v2-inference-v.yaml"
    yaml_path.write_text('model:\n  params:\n    parameterization: "v"\n')
    out = convert.convert_checkpoint(tiny_checkpoints["sd-2", "safetensors"], tmp_path / "out",
                                     config_yaml=yaml_path)
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == "v_prediction"


# --------------------------------------------------------------------------------- companion VAE


@pytest.mark.parametrize("suffix,fmt", [(".vae.safetensors", "safetensors"), (".vae.pt", "ckpt")])
def test_companion_vae_replaces_the_vae(suffix, fmt, tiny_models, tiny_checkpoints, tmp_path):
    import torch

    src = _copy(tiny_checkpoints["sd-1", "safetensors"], tmp_path / "in", "model.safetensors")
    modelgen.make_vae_file(tmp_path / "in" / f"model{suffix}", fmt, kind="sd-1", seed=7)
    notes: list = []
    out = convert.convert_checkpoint(src, tmp_path / "out", precision="fp32", on_event=notes.append)
    want = _legacy_names(modelgen.tiny_vae_state_dict("sd-1", seed=7))
    got = modelgen._load(out / "vae")
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
    _assert_same_weights(tiny_models["sd-1"], out, components=("unet", "text_encoder"))
    assert any(isinstance(e, events.ItemNote) and f"model{suffix}" in e.message for e in notes)


def test_explicit_vae_argument(tiny_checkpoints, tiny_extras, tmp_path):
    import torch

    out = convert.convert_checkpoint(tiny_checkpoints["sd-1", "ckpt"], tmp_path / "out", precision="fp32",
                                     vae=tiny_extras["vae.ckpt"])
    want = _legacy_names(modelgen.tiny_vae_state_dict("sd-1", seed=7))
    got = modelgen._load(out / "vae")
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_vae_of_another_shape_is_refused(tiny_checkpoints, tmp_path):
    src = _copy(tiny_checkpoints["sd-1", "safetensors"], tmp_path / "in", "model.safetensors")
    from safetensors.torch import save_file
    import torch

    save_file({"encoder.conv_in.weight": torch.zeros(8, 3, 3, 3), "decoder.conv_in.weight": torch.zeros(8, 4, 3, 3),
               "encoder.down.0.block.0.conv1.weight": torch.zeros(8, 8, 3, 3),
               "decoder.conv_out.weight": torch.zeros(3, 8, 3, 3)},
              str(tmp_path / "in" / "model.vae.safetensors"))
    with pytest.raises(ConversionError, match="does not fit"):
        convert.convert_checkpoint(src, tmp_path / "out")
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


# --------------------------------------------------------------------------------- failures


def test_truncated_safetensors_leaves_nothing(tiny_checkpoints, tmp_path):
    data = tiny_checkpoints["sd-1", "safetensors"].read_bytes()
    src = tmp_path / "cut.safetensors"
    src.write_bytes(data[: len(data) // 2])
    before = _sha(src)
    with pytest.raises(ConversionError) as info:
        convert.convert_checkpoint(src, tmp_path / "out")
    assert "cut.safetensors" in info.value.one_line() and info.value.hint
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == [] and _sha(src) == before


def test_truncated_ckpt_leaves_nothing(tiny_checkpoints, tmp_path):
    data = tiny_checkpoints["sd-1", "ckpt"].read_bytes()
    src = tmp_path / "cut.ckpt"
    src.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ConversionError):
        convert.convert_checkpoint(src, tmp_path / "out")
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_failure_while_writing_removes_the_temporary_folder(tiny_checkpoints, tmp_path, monkeypatch):
    calls = []
    real = writer.write_component

    def fail_on_second(out, folder, precision, device, cancel=None):
        calls.append(out.folder)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(out, folder, precision, device, cancel)

    monkeypatch.setattr(writer, "write_component", fail_on_second)
    with pytest.raises(ConversionError) as info:
        convert.convert_checkpoint(tiny_checkpoints["sd-1", "safetensors"], tmp_path / "out")
    assert "No space left" in info.value.one_line()
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_cancel_stops_and_leaves_nothing(tiny_checkpoints, tmp_path):
    import threading

    from invokeai_model_install.errors import Cancelled

    class SetAfter:
        """Becomes set after a number of polls: cancels in the middle of the writing."""

        def __init__(self, polls: int) -> None:
            self.polls = polls

        def is_set(self) -> bool:
            self.polls -= 1
            return self.polls < 0

    with pytest.raises(Cancelled):
        convert.convert_checkpoint(tiny_checkpoints["sd-1", "safetensors"], tmp_path / "out", cancel=SetAfter(300))
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []
    done = threading.Event()
    out = convert.convert_checkpoint(tiny_checkpoints["sd-1", "safetensors"], tmp_path / "out", cancel=done)
    assert out.is_dir()


def test_corrupt_tensor_layout_is_a_conversion_error(tiny_checkpoints, tmp_path):
    """A checkpoint with a layer missing fails the shape check; nothing is left behind."""
    from safetensors.torch import load_file, save_file

    sd = load_file(str(tiny_checkpoints["sd-1", "safetensors"]))
    del sd["model.diffusion_model.output_blocks.3.0.in_layers.2.weight"]
    save_file(sd, str(tmp_path / "broken.safetensors"))
    with pytest.raises(ConversionError, match="broken.safetensors.*missing"):
        convert.convert_checkpoint(tmp_path / "broken.safetensors", tmp_path / "out")
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_existing_destination_is_never_touched(tiny_checkpoints, tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(ConversionError, match="already exists"):
        convert.convert_checkpoint(tiny_checkpoints["sd-1", "safetensors"], dest)
    assert (dest / "keep.txt").read_text() == "mine" and len(list(dest.iterdir())) == 1


def test_not_a_main_model(tiny_extras, tmp_path):
    with pytest.raises(ConversionError, match="lora"):
        convert.convert_checkpoint(tiny_extras["lora-sd-1.safetensors"], tmp_path / "out")
    with pytest.raises(ConversionError):
        convert.convert_checkpoint(tmp_path / "missing.safetensors", tmp_path / "out")


def test_dangerous_pickle_is_refused_and_never_runs(tiny_checkpoints, tmp_path):
    """A real model .ckpt that also carries a payload: refused as unsafe, the payload never runs."""
    import torch

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    doc = torch.load(str(tiny_checkpoints["sd-1", "ckpt"]), weights_only=True)
    doc["callbacks"] = Evil()
    torch.save(doc, str(tmp_path / "evil.ckpt"))
    assert not marker.exists()
    with pytest.raises(UnsafeFileError) as info:
        convert.convert_checkpoint(tmp_path / "evil.ckpt", tmp_path / "out")
    assert "system" in info.value.one_line()
    assert not marker.exists() and not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_device_choices(tiny_checkpoints, tmp_path):
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="cuda"):
            convert.convert_checkpoint(tiny_checkpoints["sd-1", "safetensors"], tmp_path / "a", device="cuda")
        assert convert.resolve_device("auto") == "cpu"
    else:  # pragma: no cover - GPU machines
        assert convert.resolve_device("auto") == "cuda"
    with pytest.raises(UsageError):
        convert.convert_checkpoint(tiny_checkpoints["sd-1", "safetensors"], tmp_path / "b", device="tpu")
    with pytest.raises(UsageError):
        convert.convert_checkpoint(tiny_checkpoints["sd-1", "safetensors"], tmp_path / "c", precision="int8")
    out = convert.convert_checkpoint(tiny_checkpoints["sd-1", "safetensors"], tmp_path / "d", device="cpu")
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()


# --------------------------------------------------------------------------------- package data


def test_packaged_tokenizer_is_the_real_clip_vocabulary(tmp_path):
    from transformers import CLIPTokenizer

    for skeleton, pad in (("sd-1", "<|endoftext|>"), ("sd-2", "!")):
        folder = skeletons.materialize_skeleton(skeleton, tmp_path / skeleton)
        tok = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"))
        assert len(tok) == 49408 and tok.model_max_length == 77 and tok.pad_token == pad
        assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    vocab = skeletons.CONVERT_DATA / "clip_tokenizer" / "vocab.json"
    assert len(list(skeletons.CONVERT_DATA.rglob("vocab.json"))) == 1  # one shared copy
    assert len(json.loads(vocab.read_text())) == 49408


def test_every_skeleton_is_complete():
    for name in skeletons.SKELETONS:
        folder = skeletons.skeleton_dir(name)
        index = json.loads((folder / "model_index.json").read_text())
        for comp, spec in index.items():
            if comp.startswith("_") or not isinstance(spec, list) or spec[0] is None:
                continue
            if comp.startswith("tokenizer"):
                assert (folder / comp / "tokenizer_config.json").is_file(), (name, comp)
            elif comp == "scheduler":
                assert (folder / comp / "scheduler_config.json").is_file(), name
            else:
                assert (folder / comp / "config.json").is_file(), (name, comp)


def test_diffusers_accepts_our_skeleton_for_from_single_file(tiny_checkpoints, tmp_path, no_network):
    """The packaged skeleton is a valid offline config for diffusers' own converter too."""
    import diffusers

    folder = skeletons.materialize_skeleton("sd-1", tmp_path / "skeleton")
    # the skeleton describes the full-size model: diffusers must at least read it offline
    config = diffusers.StableDiffusionPipeline.load_config(str(folder), local_files_only=True)
    assert config["_class_name"] == "StableDiffusionPipeline"
    unet = diffusers.UNet2DConditionModel.load_config(str(folder), subfolder="unet", local_files_only=True)
    assert unet["cross_attention_dim"] == 768


def test_ckpt_tensors_are_located_in_the_file_for_kernel_copies(tiny_checkpoints):
    """.ckpt zip members are uncompressed: where the file_range says, the tensor's bytes are."""
    import os

    src = tensors.TorchSource(tiny_checkpoints["sd-1", "ckpt"])
    try:
        located = 0
        for name in list(src.shapes)[:50]:
            where = src.file_range(name)
            if where is None:
                continue
            fd, offset, nbytes = where
            assert os.pread(fd, nbytes, offset) == bytes(src.view(name))
            located += 1
        if sys.platform.startswith("linux"):
            assert located == 50
    finally:
        src.close()


FULL_SIZE = [("sd-1", "sd-1", "normal"), ("sd-1-inpaint", "sd-1", "inpaint"), ("sd-2", "sd-2", "normal"),
             ("sd-2-v", "sd-2", "normal"), ("sd-2-inpaint", "sd-2", "inpaint"), ("sdxl", "sdxl", "normal"),
             ("sdxl-refiner", "sdxl-refiner", "normal")]


def _open_clip_shapes(prefix: str, width: int, layers: int, projection: int) -> dict:
    """Names and shapes of an OpenCLIP text tower as the original checkpoints store it."""
    h = width
    shapes = {prefix + "token_embedding.weight": (49408, h), prefix + "positional_embedding": (77, h),
              prefix + "ln_final.weight": (h,), prefix + "ln_final.bias": (h,),
              prefix + "text_projection": (h, projection), prefix + "logit_scale": ()}
    for i in range(layers):
        r = f"{prefix}transformer.resblocks.{i}."
        shapes.update({r + "attn.in_proj_weight": (3 * h, h), r + "attn.in_proj_bias": (3 * h,),
                       r + "attn.out_proj.weight": (h, h), r + "attn.out_proj.bias": (h,),
                       r + "ln_1.weight": (h,), r + "ln_1.bias": (h,), r + "ln_2.weight": (h,), r + "ln_2.bias": (h,),
                       r + "mlp.c_fc.weight": (4 * h, h), r + "mlp.c_fc.bias": (4 * h,),
                       r + "mlp.c_proj.weight": (h, 4 * h), r + "mlp.c_proj.bias": (h,)})
    return shapes


@pytest.mark.parametrize("skeleton,base,variant", FULL_SIZE)
def test_full_size_layouts_derive_the_real_configs(skeleton, base, variant, tmp_path):
    """Real-size models (shapes only, on torch's meta device): the key plan covers every tensor
    and the configs derived from the shapes are exactly the official ones of the skeleton."""
    import types

    import diffusers
    import torch

    from invokeai_model_install.convert.ldm_keys import expected_clip_keys

    docs = skeletons.read_skeleton(skeleton)
    original = json.loads(json.dumps(docs))
    shapes: dict = {}
    with torch.device("meta"):
        unet = diffusers.UNet2DConditionModel.from_config(
            {k: v for k, v in docs["unet/config.json"].items() if not k.startswith("_")}).state_dict()
        vae = diffusers.AutoencoderKL.from_config(
            {k: v for k, v in docs["vae/config.json"].items() if not k.startswith("_")}).state_dict()
        for k, v in modelgen._unet_to_ldm(dict(unet), docs["unet/config.json"]).items():
            shapes["model.diffusion_model." + k] = tuple(v.shape)
        for k, v in modelgen._vae_to_ldm(dict(vae), docs["vae/config.json"]).items():
            shapes["first_stage_model." + k] = tuple(v.shape)

        def clip_l(prefix: str) -> None:
            cfg = docs["text_encoder/config.json"]
            sd = {k: torch.empty(s) for k, s in expected_clip_keys(cfg, with_projection=False).items()}
            shapes.update({prefix + k: tuple(v.shape) for k, v in modelgen._clip_to_hf_ldm(sd).items()})

    if base == "sd-1":
        clip_l("cond_stage_model.")
    elif base == "sd-2":  # ViT-H: 24 layers in the file, the model uses 23
        cfg = docs["text_encoder/config.json"]
        shapes.update(_open_clip_shapes("cond_stage_model.model.", cfg["hidden_size"], cfg["num_hidden_layers"] + 1,
                                        cfg["hidden_size"]))
    else:
        cfg = docs["text_encoder_2/config.json"]
        if base == "sdxl":
            clip_l("conditioner.embedders.0.")
        prefix = "conditioner.embedders.1.model." if base == "sdxl" else "conditioner.embedders.0.model."
        shapes.update(_open_clip_shapes(prefix, cfg["hidden_size"], cfg["num_hidden_layers"], cfg["projection_dim"]))

    source = types.SimpleNamespace(shapes=shapes, codes={k: "F32" for k in shapes}, position=lambda name: 0)
    probe = types.SimpleNamespace(base=base, variant=variant)
    prediction = "v" if skeleton == "sd-2-v" else "epsilon"
    outputs, checks = convert._plan(tmp_path / "real.safetensors", source, probe, docs, options.YamlOptions(),
                                    prediction, events.discard)
    for check in checks.values():  # every planned tensor matches the diffusers model, nothing missing
        shape_checks.check_shapes(check[0], check[1], shape_checks.meta_shapes(check[2], check[3]), check[4])
    for rel in ("unet/config.json", "vae/config.json", "text_encoder/config.json", "text_encoder_2/config.json",
                "scheduler/scheduler_config.json", "model_index.json"):
        assert docs.get(rel) == original.get(rel), rel
    planned = {m.src for o in outputs for m in o.plan.moves} | {k for o in outputs for k in o.plan.skipped}
    assert planned == set(shapes), sorted(set(shapes) - planned)[:5]
