"""Convert a single-file Stable Diffusion checkpoint into a diffusers folder, offline.

Supported: SD 1.x (normal and inpainting), SD 2.x (epsilon and v-prediction, normal and
inpainting), SDXL base (and its inpainting variant) and SDXL refiner, from ``.safetensors``
or pickle ``.ckpt``/``.pt``/``.pth``/``.bin`` files, fp32/fp16/bf16.

How (see docs/conversion.md):

1. The probe reads the header (names, shapes, ``global_step``): base, variant, EMA.
2. The prediction type is decided: the ``prediction_type`` argument, else a yaml
   (``config_yaml`` or the companion ``<stem>.yaml``: ``parameterization: "v"``), else the
   probe (SD2 ``global_step`` 110000 -> v, 220000 -> epsilon), else epsilon for everything
   but SD2, whose undecided case raises :class:`QuestionUnanswered` for the caller to ask.
3. :mod:`.ldm_keys` plans every output tensor from names and shapes only, and derives the
   weight-dependent config values; the package skeleton (``convert/data/<type>/``) gives
   the rest, and its tokenizer files are copied (the shared CLIP vocabulary).
4. The plan is checked against the diffusers models built on torch's ``meta`` device (no
   memory; in a thread beside the writing, awaited before the move into place), so a
   checkpoint of an unexpected shape fails with a clear message instead of loading
   silently wrong later.
5. The bytes stream tensor by tensor from the memory-mapped input into
   :class:`.safetensors_stream.StreamingWriter` files, in input order, casting to fp16 when
   asked; consumed input pages are dropped from the resident set as we go.  No torch
   module is built, no state dict is held.
6. Everything is written to a hidden temporary folder next to ``dest``, fsynced, and moved
   into place with one ``os.replace``; on any failure the temporary folder is removed.
   The source file is only ever read.

Pickle checkpoints are loaded only through :func:`.safety.load_state_dict` (scan first,
then ``torch.load(weights_only=True, mmap=True)`` with just the known-benign
pytorch_lightning globals allowed).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from invokeai_model_install.convert import ldm_keys, writer
from invokeai_model_install.convert.options import YamlOptions, companion_vae, normalize_prediction, read_yaml, resolve_device
from invokeai_model_install.convert.shape_checks import ShapeChecks, check_shapes
from invokeai_model_install.convert.skeletons import CONVERT_DATA, TOKENIZER_SHARED, read_skeleton, skeleton_for
from invokeai_model_install.convert.tensors import TensorSource, open_source
from invokeai_model_install.convert.writer import Output, fsync_tree, nbytes, out_code, write_json
from invokeai_model_install.errors import (
    ConversionError,
    DiskSpaceError,
    InstallerError,
    ProbeError,
    QuestionUnanswered,
    UsageError,
)
from invokeai_model_install.events import EventSink, ItemConverted, ItemNote, StageChanged, discard
from invokeai_model_install.root.atomic import fsync_path

__all__ = ["convert_checkpoint", "resolve_device"]


def convert_checkpoint(
    src: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    probe: Any = None,
    precision: str = "fp16",
    device: str = "auto",
    prediction_type: str | None = None,
    config_yaml: str | os.PathLike | None = None,
    vae: str | os.PathLike | None = None,
    on_event: EventSink = discard,
    cancel: Any = None,
) -> Path:
    """Convert the single-file checkpoint ``src`` into a new diffusers folder ``dest``; return ``dest``.

    :param probe: a :class:`.probe.ProbeResult` of ``src`` already at hand (else it is probed).
    :param precision: ``"fp16"`` or ``"fp32"``: the dtype of the floating-point weights written.
    :param device: ``auto|cpu|cuda|mps``: where dtype casts run (``auto``: CUDA when present).
    :param prediction_type: ``"epsilon"`` or ``"v"``; overrides every other clue.
    :param config_yaml: an original LDM/SGM yaml; default: the companion ``<stem>.yaml``.
    :param vae: a VAE file replacing the checkpoint's; default: the companion ``<stem>.vae.*``.
    :param cancel: an Event-like object (``is_set()``), polled between tensors: when set, the
        conversion stops with :class:`.errors.Cancelled` and leaves nothing behind.
    :raises QuestionUnanswered: an SD2 model whose prediction type cannot be decided and
        ``prediction_type`` is None (ask the user, call again with the answer).
    :raises ConversionError: anything else that stops the conversion; nothing is left behind.
    """
    t0 = time.monotonic()
    src = Path(src)
    dest = Path(dest)
    if precision not in ("fp16", "fp32"):
        raise UsageError(f"unknown precision {precision!r}", hint="use fp16 or fp32")
    if not src.is_file():
        raise ConversionError(f"{src}: no such checkpoint file", hint="check the path")
    if dest.exists():
        raise ConversionError(f"{dest}: already exists; not converting {src.name} over it",
                              hint="delete it first or choose another name")
    wanted = normalize_prediction(prediction_type)

    on_event(StageChanged(stage="convert", detail=f"reading {src.name}"))
    if probe is None:
        from invokeai_model_install.identify import probe as probe_mod

        try:
            probe = probe_mod.probe(src)
        except ProbeError as exc:  # unreadable: the contract's ConversionError, same words
            raise ConversionError(exc.message, hint=exc.hint) from exc
    if probe.kind != "main":
        raise ConversionError(f"{src.name}: a {probe.kind} file, not a main model; only main models convert",
                              hint=probe.reason or "install it as it is")
    if probe.variant == "depth":
        raise ConversionError(f"{src.name}: SD 2 depth models are not supported by the converter",
                              hint="install it as a single file, or use the diffusers version of the model")
    if probe.base not in ("sd-1", "sd-2", "sdxl", "sdxl-refiner") or probe.variant not in ("normal", "inpaint"):
        raise ConversionError(f"{src.name}: cannot convert a {probe.base} {probe.variant} model")

    # --- companions and the prediction type ---
    yaml_opts = YamlOptions()
    yaml_path = Path(config_yaml) if config_yaml is not None else None
    if yaml_path is None:
        from invokeai_model_install.identify.probe import companion_yaml

        yaml_path = companion_yaml(src)
    if yaml_path is not None:
        if not yaml_path.is_file():
            raise ConversionError(f"{yaml_path}: no such config file", hint="check the path")
        yaml_opts = read_yaml(yaml_path)
        on_event(ItemNote(message=f"using the config {yaml_path.name}"))
    if wanted is None and yaml_opts.parameterization is not None:
        wanted = "v" if yaml_opts.parameterization == "v" else "epsilon"
    if wanted is None and probe.prediction_type in ("epsilon", "v"):
        wanted = probe.prediction_type
    if wanted is None and probe.base != "sd-2":
        wanted = "epsilon"
    if wanted is None:
        raise QuestionUnanswered(
            f"{src.name}: an SD 2 model whose prediction type cannot be told from the file",
            hint="answer 'v' (768-pixel SD 2.x models, e.g. 2.1 768) or 'epsilon' (512-pixel 'base' models); "
                 "headless: --prediction-type v|epsilon",
        )
    vae_path = Path(vae) if vae is not None else companion_vae(src)
    if vae_path is not None and not vae_path.is_file():
        raise ConversionError(f"{vae_path}: no such VAE file", hint="check the path")
    dev = resolve_device(device)

    skeleton_name = skeleton_for(probe.base, probe.variant, wanted)
    docs = read_skeleton(skeleton_name)

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.converting-{uuid.uuid4().hex[:8]}"
    sources: list[TensorSource] = []
    started_checker: ShapeChecks | None = None
    try:
        source = open_source(src)
        sources.append(source)
        outputs, checks = _plan(src, source, probe, docs, yaml_opts, wanted, on_event)
        if vae_path is not None:
            vae_source = open_source(vae_path)
            sources.append(vae_source)
            prefix = ldm_keys.vae_prefix(vae_source.shapes)
            if prefix is None:
                raise ConversionError(f"{vae_path.name}: not a VAE (no encoder/decoder weights)",
                                      hint="give a VAE file such as vae-ft-mse-840000-ema-pruned")
            vplan = ldm_keys.plan_vae(vae_source.shapes, prefix)
            if vplan.config["block_out_channels"] != docs["vae/config.json"]["block_out_channels"]:
                raise ConversionError(
                    f"{vae_path.name}: this VAE does not fit {src.name} "
                    f"(channels {vplan.config['block_out_channels']} vs "
                    f"{docs['vae/config.json']['block_out_channels']})",
                    hint="use a VAE made for this model's base, or remove the companion VAE file")
            checks["vae"] = ("VAE", {m.out: m.shape for m in vplan.moves}, "AutoencoderKL",
                             dict(docs["vae/config.json"]), vae_path)
            outputs = [o for o in outputs if o.folder != "vae"]
            outputs.append(Output("vae", "diffusion_pytorch_model.safetensors", vplan, vae_source))
            on_event(ItemNote(message=f"using the VAE {vae_path.name}"))

        # --- room on disk ---
        needed = sum(nbytes(m.shape, out_code(o.source.codes[m.src], precision))
                     for o in outputs for m in o.plan.moves) + (4 << 20)
        free = shutil.disk_usage(dest.parent).free
        if free < needed:
            raise DiskSpaceError(f"converting {src.name} needs {needed / 1e9:.1f} GB in {dest.parent}, "
                                 f"{free / 1e9:.1f} GB free")

        tmp.mkdir()
        for rel, doc in docs.items():
            if rel.startswith(("tokenizer", "model_index", "scheduler")):
                write_json(tmp / rel, doc)
        for tok in ("tokenizer", "tokenizer_2"):
            if (tmp / tok).is_dir():
                for f in TOKENIZER_SHARED:
                    shutil.copyfile(CONVERT_DATA / "clip_tokenizer" / f, tmp / tok / f)
        for o in outputs:
            cfg = docs[f"{o.folder}/config.json"]
            if o.folder.startswith("text_encoder"):
                cfg.pop("torch_dtype", None)
                cfg["dtype"] = "float16" if precision == "fp16" else "float32"
            write_json(tmp / o.folder / "config.json", cfg)
        checker = ShapeChecks(list(checks.values()))
        checker.start()
        started_checker = checker
        order = sorted(outputs, key=lambda o: (sources.index(o.source), min(
            (o.source.position(m.src) for m in o.plan.moves), default=0)))
        for n, o in enumerate(order, 1):
            on_event(StageChanged(stage="convert", detail=f"{o.folder} ({n}/{len(order)})"))
            writer.write_component(o, tmp / o.folder, precision, dev, cancel)
        checker.result()
        fsync_tree(tmp)
        os.replace(tmp, dest)
        fsync_path(dest.parent)
    except BaseException as exc:
        if started_checker is not None:
            # Never leave the checker running: a daemon thread still inside torch/diffusers
            # C++ code when the interpreter exits aborts the whole process (std::terminate).
            started_checker.join()
        shutil.rmtree(tmp, ignore_errors=True)
        for s in sources:
            s.close()
        sources.clear()
        if isinstance(exc, ProbeError):
            raise ConversionError(exc.message, hint=exc.hint) from exc
        if isinstance(exc, (InstallerError, KeyboardInterrupt, SystemExit)):
            raise
        if isinstance(exc, ldm_keys.MappingError):
            raise ConversionError(f"{src.name}: {exc}",
                                  hint="this checkpoint's layout is not a standard SD 1.x/2.x/SDXL one") from None
        if isinstance(exc, OSError):
            raise ConversionError(f"converting {src.name} failed: {exc.strerror or exc}",
                                  hint="check free disk space and permissions, then try again") from exc
        raise ConversionError(f"converting {src.name} failed: {type(exc).__name__}: {exc}",
                              hint="the file may be damaged; download it again") from exc
    finally:
        for s in sources:
            s.close()
    on_event(ItemConverted(path=str(dest), seconds=round(time.monotonic() - t0, 3)))
    return dest


def _plan(src: Path, source: TensorSource, probe: Any, docs: dict[str, Any], yaml_opts: YamlOptions,
          prediction: str, on_event: EventSink) -> tuple[list[Output], dict[str, tuple]]:
    """Every output component's tensor plan (skeleton configs updated in ``docs``), and the
    shape checks against diffusers' models still to run, by component folder."""
    shapes = {k: s for k, s in source.shapes.items() if k in source.codes}
    ema = sum(1 for k in shapes if k.startswith(ldm_keys.EMA_PREFIX)) > 100
    unet = ldm_keys.plan_unet(shapes, use_ema=ema, attention_heads=yaml_opts.heads, skeleton=docs["unet/config.json"])
    if ema:
        used = sum(1 for m in unet.moves if m.src.startswith(ldm_keys.EMA_PREFIX))
        on_event(ItemNote(message=f"using the EMA weights ({used} of {len(unet.moves)} UNet tensors)"))
    ucfg = docs["unet/config.json"]
    ucfg.update(unet.config)
    outputs = [Output("unet", "diffusion_pytorch_model.safetensors", unet, source)]

    prefix = ldm_keys.vae_prefix(shapes)
    if prefix is None:
        raise ConversionError(f"{src.name}: holds no VAE weights (first_stage_model.*)",
                              hint="put a matching <name>.vae.safetensors next to it, or pass a VAE")
    vae = ldm_keys.plan_vae({k: s for k, s in shapes.items() if k.startswith(prefix)}, prefix)
    vcfg = docs["vae/config.json"]
    vcfg.update(vae.config)
    if yaml_opts.scale_factor is not None:
        vcfg["scaling_factor"] = yaml_opts.scale_factor
    outputs.append(Output("vae", "diffusion_pytorch_model.safetensors", vae, source))

    if probe.base == "sd-1":
        tplans = [ldm_keys.plan_hf_clip(shapes, "cond_stage_model.transformer.", "text_encoder")]
    elif probe.base == "sd-2":
        penultimate = True if yaml_opts.penultimate is None else yaml_opts.penultimate
        tplans = [ldm_keys.plan_open_clip(shapes, "cond_stage_model.model.", "text_encoder",
                                          drop_last_layer=penultimate, with_projection=False)]
    elif probe.base == "sdxl":
        tplans = [ldm_keys.plan_hf_clip(shapes, "conditioner.embedders.0.transformer.", "text_encoder"),
                  ldm_keys.plan_open_clip(shapes, "conditioner.embedders.1.model.", "text_encoder_2",
                                          drop_last_layer=False, with_projection=True)]
    else:  # refiner: only the bigG tower
        tplans = [ldm_keys.plan_open_clip(shapes, "conditioner.embedders.0.model.", "text_encoder_2",
                                          drop_last_layer=False, with_projection=True)]
    for tp in tplans:
        cfg = docs[f"{tp.name}/config.json"]
        cfg.update(tp.config)
        with_proj = cfg.get("architectures") == ["CLIPTextModelWithProjection"]
        check_shapes(f"text encoder ({tp.name})", {m.out: m.shape for m in tp.moves},
                      ldm_keys.expected_clip_keys(cfg, with_projection=with_proj), src)
        outputs.append(Output(tp.name, "model.safetensors", tp, source))

    if ucfg.get("addition_embed_type") == "text_time":
        pooled = docs["text_encoder_2/config.json"]["projection_dim"]
        n_ids = 5 if probe.base == "sdxl-refiner" else 6  # the refiner adds an aesthetic score, not a crop size
        ucfg["addition_time_embed_dim"] = (ucfg["projection_class_embeddings_input_dim"] - pooled) // n_ids
        if ucfg["in_channels"] == 9:
            docs["model_index.json"]["_class_name"] = "StableDiffusionXLInpaintPipeline"

    sched = docs["scheduler/scheduler_config.json"]
    sched["prediction_type"] = "v_prediction" if prediction == "v" else "epsilon"

    checks = {
        "unet": ("UNet", {m.out: m.shape for m in unet.moves}, "UNet2DConditionModel", dict(ucfg), src),
        "vae": ("VAE", {m.out: m.shape for m in vae.moves}, "AutoencoderKL", dict(vcfg), src),
    }
    return outputs, checks
