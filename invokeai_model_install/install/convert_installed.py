"""Convert an installed single-file model to diffusers, in place of its stanza (the seed's ``!optimize_model``).

Nothing is downloaded: the checkpoint that ``models.yaml`` points at is converted
into ``models/converted_ckpts/<name>``; then, under the registry lock, the stanza keeps
its name, place, description and default flag but now points at the folder
(``format: diffusers``).  The original file is kept unless ``delete_original``
is asked, and even then only a file inside ``ROOT/models`` is deleted (the same
rule as ``delete --purge``).

Shared by ``invokeai-model-install convert NAME`` and the web manager: both run
it as a plan item (``InstallPlan.convert_models``), so progress, the SD-2
question and cancel work as for any other item.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any

from invokeai_model_install.root import manifest as mf
from invokeai_model_install.errors import Cancelled, ConversionError, UnknownModelError
from invokeai_model_install.events import Event, ItemConverted, ItemNote, ItemRegistered


def check_convertible(stanza: dict[str, Any] | None, name: str, layout: Any) -> Path:
    """The checkpoint file of an installed model that can be converted, or an error saying why not.

    Raises :class:`UnknownModelError` when ``stanza`` is None, :class:`ConversionError`
    for a diffusers model, a non-main model (VAE, LoRA, ...) or a missing file.
    """
    from invokeai_model_install.root.registry import stanza_format

    if stanza is None:
        from invokeai_model_install.root import manifest as mf

        record = mf.read_manifest(layout, name)
        if record is not None and not record.stanza and record.kind != "main":  # a LoRA, VAE ... of a 2.3 root
            raise ConversionError(f"{name} is a {record.kind}, not a main model; only main models convert to diffusers", "")
        raise UnknownModelError(f"no model named {name!r} in {layout.models_yaml}", "see `invokeai-model-install list`")
    kind = str(stanza.get("type") or "main")
    if kind != "main":
        raise ConversionError(f"{name} is a {kind}, not a main model; only main models convert to diffusers", "")
    if stanza_format(stanza) == "diffusers":
        raise ConversionError(f"{name} is already a diffusers model", "nothing to convert")
    weights = stanza.get("weights")
    if not isinstance(weights, str) or not weights:
        raise ConversionError(f"{name} has no weights file in models.yaml", "fix its stanza or reinstall it")
    path = layout.absolute(weights)
    if not path.is_file():
        raise ConversionError(f"{name}: its checkpoint {path} is missing", "reinstall the model or fix its weights path")
    return path


def _source_digest(layout: Any, name: str, src: Path, cancel: Any) -> str:
    """sha256 of the checkpoint: from its manifest when that still matches, else hashed now."""
    old = mf.read_manifest(layout, name)
    if old is not None and len(old.files) == 1 and not mf.verify_manifest(layout, old):
        return old.files[0].sha256
    return mf.sha256_file(src, cancel)


def convert_installed_item(item: Any, ctx: Any) -> Any:
    """Run one ``convert-installed`` work item (``item.line`` is the model name); returns an ItemOutcome."""
    from invokeai_model_install.install.identity import key_hash
    from invokeai_model_install.install.item import ItemOutcome
    from invokeai_model_install.identify.probe import probe
    from invokeai_model_install.install.examine import check_safety
    from invokeai_model_install.install.placement import refresh_mtimes
    from invokeai_model_install.install.questions import convert_answering
    from invokeai_model_install.root.registry import purge_model_files

    layout = ctx.layout
    name = item.line
    ctx.stage("probe", name)
    stanza = ctx.registry.load().get(name)
    src = check_convertible(stanza, name, layout)
    assert stanza is not None
    check_safety(src, ctx, name, delete_on_danger=False)
    pr = probe(src)
    if pr.kind != "main":
        raise ConversionError(f"{name}: {src.name} is a {pr.kind} file, not a main model", "")

    config = stanza.get("config")
    config_path = layout.absolute(config) if isinstance(config, str) and config else None
    if config_path is not None and not config_path.is_file():
        ctx.note(f"{name}: its config {config_path} is missing; judging the model from the file")
        config_path = None
    vae = stanza.get("vae")
    vae_file = None
    new_vae: Any = None
    if isinstance(vae, str) and vae:
        from invokeai_model_install.root.registry import looks_like_repo_id

        candidate = layout.absolute(vae)
        if candidate.is_file():
            vae_file = candidate  # baked into the converted model's vae/ folder
        elif looks_like_repo_id(vae):
            new_vae = {"repo_id": vae}
    elif isinstance(vae, dict):
        new_vae = dict(vae)

    digest = _source_digest(layout, name, src, ctx.cancel)
    folder = layout.converted_dir
    dest, n = folder / name, 2
    while dest.exists():
        dest = folder / f"{name}-{n}"
        n += 1
    tmp = layout.partial_dir / f"convert-installed-{key_hash(name)}"
    if tmp.exists():
        shutil.rmtree(tmp)

    def forward(event: Event) -> None:
        if not isinstance(event, ItemConverted):
            ctx.emit(event)

    kwargs: dict[str, Any] = dict(probe=pr, precision=ctx.plan.precision, device=ctx.plan.device,
                                  prediction_type=ctx.plan.prediction_type, config_yaml=config_path, vae=vae_file,
                                  on_event=forward, cancel=ctx.cancel)
    ctx.stage("convert", f"{src.name} -> {layout.relative(dest)}")
    started = time.monotonic()
    convert_answering(src, tmp, ctx, name, **kwargs)
    try:
        ctx.check_cancel()
    except Cancelled:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    ctx.emit(ItemConverted(path=layout.relative(dest), seconds=time.monotonic() - started))

    files = mf.record_files(layout, [tmp], cancel=ctx.cancel)
    prefix_tmp, prefix_dest = layout.relative(tmp), layout.relative(dest)
    files = tuple(dataclasses.replace(f, path=prefix_dest + f.path[len(prefix_tmp):]) for f in files)
    new_pr = probe(tmp)
    new_stanza: dict[str, Any] = {"description": stanza.get("description") or f"{name} (converted to diffusers)",
                                  "format": "diffusers", "path": prefix_dest}
    if new_vae is not None:
        new_stanza["vae"] = new_vae
    base = new_pr.base or pr.base or stanza.get("base")
    if base:
        new_stanza["base"] = base
    new_stanza["default"] = stanza.get("default") is True
    # fields we do not know (hand-written notes) travel with the model
    known = {"description", "weights", "config", "format", "vae", "width", "height", "default", "base", "path", "repo_id"}
    for key, value in stanza.items():
        if key not in known:
            new_stanza[key] = value
    old_manifest = mf.read_manifest(layout, name)
    key = (old_manifest.key if old_manifest is not None else f"file:{src.resolve()}") + "#diffusers"
    m = mf.Manifest(name=name, key=key, source=old_manifest.source if old_manifest else str(src), kind="main",
                    format="diffusers", path=prefix_dest, files=files, state="placed",
                    source_sha256=((layout.relative(src), digest),), stanza=new_stanza)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, dest)
    m = refresh_mtimes(layout, m)
    mf.write_manifest(layout, m)  # replaces the single file's manifest: the model is the folder now

    ctx.stage("register")
    with ctx.registry.transaction() as doc:
        current = doc.get(name)
        if current is None or current.get("weights") != stanza.get("weights"):
            # changed under us (deleted or edited while converting): keep their change, register nothing
            raise ConversionError(f"{name} changed in models.yaml while it was converted; the converted copy is in "
                                  f"{layout.relative(dest)}", "add that folder as a model if you want it")
        current.clear()
        current.update(new_stanza)
        remaining = {k: dict(v) for k, v in doc.stanzas.items()}
    mf.write_manifest(layout, dataclasses.replace(m, state="installed"))
    message = f"converted to {prefix_dest}"
    if ctx.plan.delete_original:
        deleted, kept = purge_model_files(layout, {"weights": stanza["weights"]}, remaining)
        if deleted:
            message += f"; deleted the original {layout.relative(deleted[0])}"
        for path, why in kept:
            ctx.emit(ItemNote(message=f"kept the original {path} ({why})"))
            message += f"; kept the original {path} ({why})"
    else:
        message += f"; the original {layout.relative(src)} is kept"
    ctx.emit(ItemRegistered(name=name, path=prefix_dest))
    return ItemOutcome(item=item.id, label=item.label, status="installed", name=name, message=message, path=prefix_dest)
