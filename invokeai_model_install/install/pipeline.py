"""One plan item through the pipeline: resolve → download → verify → probe → place → convert → register.

The worker (:mod:`worker`) turns an :class:`InstallPlan` into :class:`WorkItem`
values and calls :func:`run_item` for each; this module never prints, reports
through the item's ``emit`` callback, and raises :class:`InstallerError`
subclasses that the worker turns into ``ItemFailed`` events.

Crash safety (a SIGKILL may land anywhere):

* bytes go to a staging folder under ``models/.partial/staging/<key hash>``
  (the download engine resumes there);
* before files move into ``models/<kind>/`` a manifest in state ``placed`` is
  written; the move is one ``os.rename`` (whole folder or file);
* the stanza is added to models.yaml under its lock, then the manifest becomes
  ``installed``.  A re-run finds the manifest by source key and finishes
  whatever step was missing, fetching nothing that is already in place.

Nothing is written to models.yaml for an item that failed.  One source is worked on
by one installer at a time (a file lock per source under ``models/.partial/locks``):
two installers asking for the same model do not download it twice.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any

from invokeai_model_install.identify.families import UNREGISTERED_KINDS
from invokeai_model_install.errors import InstallerError, NotFoundError, ProbeError
from invokeai_model_install.events import Event, ItemConverted, ItemVerified
from invokeai_model_install.identify.probe import ProbeResult, probe
from invokeai_model_install.install.examine import check_safety
from invokeai_model_install.install import compat23
from invokeai_model_install.install.identity import hub_key, key_hash, local_path, source_key, staging_dir
from invokeai_model_install.install.item import Installed, ItemContext, ItemOutcome, Spec, WorkItem
from invokeai_model_install.install.locking import source_lock
from invokeai_model_install.install.placement import (
    choose_dir_dest,
    choose_file_dest,
    file_size,
    free_name,
    refresh_mtimes,
    release_reservations,
    remove_path,
    single_model_file,
    strip_variants,
)
from invokeai_model_install.install.pins import apply_pins, catalogue_pins, manifest_pins
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.install.questions import convert_answering, prediction_type
from invokeai_model_install.install.register import register, registered_elsewhere, same_place
from invokeai_model_install.install.removal import remove_model
from invokeai_model_install.install.stanza import stanza_for, vae_for_stanza
from invokeai_model_install.net.settings import DownloadSettings, Resolved
from invokeai_model_install.net.sources import HubSource, UrlSource
from invokeai_model_install.root import manifest as mf
from invokeai_model_install.root.catalog import StarterModel
from invokeai_model_install.root.layout import REGISTERED_KINDS


def run_item(item: WorkItem, ctx: ItemContext) -> ItemOutcome:
    """Run one item; raises InstallerError (the worker reports it as ItemFailed)."""
    if item.action == "invalid":
        assert item.error is not None
        raise item.error
    if item.action == "remove":
        return remove_model(item, ctx)
    if item.action == "locked":
        from invokeai_model_install.install.locked import install_locked_item

        return install_locked_item(item, ctx)
    if item.action == "convert-installed":
        from invokeai_model_install.install.convert_installed import convert_installed_item

        return convert_installed_item(item, ctx)
    spec = spec_for(item, ctx.plan)
    before = ctx.fetched
    if item.starter is not None and not ctx.plan.download_unsupported and ctx.layout.flavour == "invokeai":
        why = compat23.starter_refusal(item.starter)
        if why is not None:
            raise compat23.Unsupported(why)
    if item.starter is not None and not mf.find_by_key(ctx.layout, spec.key):
        older = registered_elsewhere(item.starter, ctx)
        if older is not None:
            return ItemOutcome(item=item.id, label=item.label, status="skipped", name=older.name, message=older.message)
    vae_value = None
    if item.starter is not None and item.starter.vae is not None:
        vae_value = _install_starter_vae(item.starter, ctx)
    done = _install(spec, ctx, convert=ctx.plan.convert, vae=vae_value)
    return ItemOutcome(
        item=item.id,
        label=item.label,
        status=done.status,
        name=done.name,
        message=done.message,
        path=ctx.layout.relative(done.path),
        fetched_bytes=ctx.fetched - before,
    )


def spec_for(item: WorkItem, plan: InstallPlan) -> Spec:
    """The identity, label and base name of an install item (no I/O)."""
    if item.starter is not None:
        s = item.starter
        return Spec(
            key=hub_key(s.repo_id, None, None, s.file),
            label=item.label,
            base_name=s.key,
            starter=s,
            description=s.description,
        )
    src = item.source
    assert src is not None, "an install item has a source or a starter"
    if isinstance(src, HubSource):
        name = src.repo_id.split("/")[-1]
        if src.path_in_repo:
            name = Path(src.path_in_repo).stem
        elif src.subfolder:
            name = f"{name}-{src.subfolder.strip('/').split('/')[-1]}"
        base = name
    elif isinstance(src, UrlSource):
        from urllib.parse import unquote, urlsplit

        base = Path(unquote(urlsplit(src.url).path)).stem or "model"
    else:
        p = Path(str(src.path))
        base = p.name if p.is_dir() else p.stem
    return Spec(key=source_key(src), label=item.label, base_name=base, source=src)


def _install_starter_vae(starter: StarterModel, ctx: ItemContext) -> dict[str, str]:
    """Install a catalogue VAE (hub repo) and return the stanza value that references it."""
    ref = starter.vae
    if ref.path:
        return {"path": ref.path}
    src = HubSource(repo_id=ref.repo_id, subfolder=ref.subfolder)
    spec = Spec(
        key=source_key(src),
        label=f"VAE {ref.repo_id}",
        base_name=ref.repo_id.split("/")[-1],
        source=src,
        description=f"VAE {ref.repo_id} (for {starter.key})",
        want_kind="vae",
    )
    ctx.stage("vae", ref.repo_id)
    _install(spec, ctx, convert=False, vae=None)
    # 2.3.5 reads a diffusers VAE only through the HF cache (models/hub), where it was placed
    out = {"repo_id": ref.repo_id}
    if ref.subfolder:
        out["subfolder"] = ref.subfolder
    return out


def _install(spec: Spec, ctx: ItemContext, *, convert: bool, vae: Any) -> Installed:
    # Two installers on one root may pick the same model: the second waits, then finds it installed.
    with source_lock(ctx, spec):
        try:
            return _install_locked(spec, ctx, convert=convert, vae=vae)
        finally:
            release_reservations(ctx.layout)  # the manifest holds the name now (or the item failed)


def _install_locked(spec: Spec, ctx: ItemContext, *, convert: bool, vae: Any) -> Installed:
    layout = ctx.layout
    conv_key = spec.key + "#diffusers"
    # 0. already there?  (before any network access: a re-run works offline)
    keys = [conv_key, spec.key] if convert else [spec.key]
    broken: dict[str, mf.Manifest] = {}  # earlier installs whose files are damaged: repaired in place, same name
    for key in keys:
        for m in mf.find_by_key(layout, key):
            found = _resume_from_manifest(m, spec, ctx, vae)
            if found is None:
                broken.setdefault(key, m)
                continue
            if key == spec.key and convert and m.kind == "main" and m.format != "diffusers":
                # installed earlier as a single file: convert that file, no download
                return _convert_and_register(layout.absolute(m.path), spec, ctx, conv_key, vae, source_sha={m.path: m.files[0].sha256} if m.files else {})
            return found

    local = local_path(spec.source)
    if local is not None:
        return _install_local(local, spec, ctx, convert=convert, conv_key=conv_key, vae=vae, broken=broken)

    # 1. resolve + download into staging
    ctx.stage("resolve", spec.label)
    resolved = resolve_remote(spec, ctx.settings, ctx.plan.precision)
    # hashes we hold (an earlier install of this revision) beat the server's
    resolved = apply_pins(resolved, manifest_pins(broken.get(spec.key), resolved, layout), spec.label,
                          what="the manifest of the installed copy")
    if (layout.flavour == "invokeai" and getattr(resolved, "kind_hint", None) == "main-diffusers"
            and not ctx.plan.download_unsupported and any(f.relpath.startswith("text_encoder_2/") for f in resolved.files)):
        raise compat23.Unsupported(f"{spec.label}: {compat23.refusal('main', 'sdxl')}")  # known before any download
    staged = staging_dir(layout, spec.key)
    sha_by_rel = _download(resolved, staged, ctx)
    ctx.stage("verify")
    total = sum(int(getattr(f, "size", 0) or 0) for f in resolved.files)
    ctx.emit(ItemVerified(files=len(resolved.files), bytes=total))

    # 2. probe + safety
    ctx.stage("probe")
    rels = [f.relpath for f in resolved.files]
    single = single_model_file(rels)
    subject = staged / single if single else staged
    try:
        check_safety(subject, ctx, spec.label, delete_on_danger=True)  # before anything reads it
        pr = probe(subject)
    except ProbeError:
        # A complete download that is no model (an unverified URL that sent wrong bytes, a page) must not
        # stay in staging: the next run would take it as already downloaded and fail the same way forever.
        shutil.rmtree(staged, ignore_errors=True)
        raise
    if single and isinstance(spec.source, UrlSource):
        from invokeai_model_install.net.sources import url_names_its_file

        if not url_names_its_file(spec.source.url):  # civitai's /api/download/models/ID: named after the server's file name
            spec.base_name = Path(single).stem or spec.base_name
    if getattr(resolved, "kind_hint", None) == "main-diffusers" and not single:
        kind = "main"
    else:
        kind = pr.kind
    if kind == "unknown" or (spec.want_kind and kind != spec.want_kind):
        shutil.rmtree(staged, ignore_errors=True)  # fetching it again would not change what it is
        if kind == "unknown":
            raise ProbeError(f"{spec.label} is not a model this installer knows ({pr.reason or 'unrecognised contents'})",
                             "check that the source is a Stable Diffusion model, LoRA, VAE, embedding or ControlNet")
        raise ProbeError(f"{spec.label} is a {kind} model, expected a {spec.want_kind}", "check the catalogue entry")
    if layout.flavour == "invokeai":
        _refuse_newer_family(kind, pr, spec.label, staged)
        refused = compat23.refusal(kind, pr.base)
        if refused is not None and not ctx.plan.download_unsupported:
            shutil.rmtree(staged, ignore_errors=True)
            raise compat23.Unsupported(f"{spec.label}: {refused}")

    revision = getattr(resolved, "commit", None)
    source_text = spec.source.label if spec.source is not None and hasattr(spec.source, "label") else spec.label
    if spec.starter is not None:
        source_text = f"{spec.starter.key} ({spec.starter.repo_id})"

    if convert and kind == "main" and single:
        done = _convert_and_register(subject, spec, ctx, conv_key, vae, source_sha={}, probe_result=pr, reuse=broken.get(conv_key),
                                     revision=revision, source_text=source_text)
        shutil.rmtree(staged, ignore_errors=True)  # the converted copy is the model; the download is not kept
        return done

    # 3. place
    ctx.stage("place")
    reuse = broken.get(spec.key)
    source_of: dict[str, tuple[str, int]] = {}  # rel -> (sha256, size) as downloaded, for files rewritten for 2.3.5
    hub_repo = getattr(resolved, "repo_id", None) if spec.source is None or type(spec.source).__name__ == "HubSource" else None
    if single:
        folder = layout.kind_dir(kind)
        name, dest = choose_file_dest(ctx, spec.base_name, folder, Path(single).name, reuse=reuse)
        src_path = subject
        before = (sha_by_rel.get(single, ""), subject.stat().st_size)
        if kind == "embedding" and layout.flavour == "invokeai" and compat23.fix_embedding(subject):
            sha_by_rel[single] = mf.sha256_file(subject, ctx.cancel)
            source_of[single] = before
            ctx.note(f"{Path(single).name}: added the sd_checkpoint fields InvokeAI 2.3.5 reads (without them it fails to load any model)")
    elif kind == "vae" and hub_repo and revision and layout.flavour == "invokeai":
        # a diffusers VAE: 2.3.5 reads it only through the HF cache, as vae: {repo_id: ...} (model_manager.py ~1231-1288)
        name = reuse.name if reuse is not None else free_name(ctx, spec.base_name)
        sub = (getattr(spec.source, "subfolder", None) or "").strip("/")
        snapshot = layout.hf_repo_dir(hub_repo) / "snapshots" / revision
        dest = snapshot / sub if sub else snapshot
        src_path = staged
    else:
        folder = layout.kind_dir("main-diffusers" if kind == "main" else kind)
        name, dest = choose_dir_dest(ctx, spec.base_name, folder, reuse=reuse)
        src_path = staged
    if not single:
        renamed = strip_variants(staged, rels)
        rels = [renamed.get(r, r) for r in rels]
        sha_by_rel = {renamed.get(r, r): d for r, d in sha_by_rel.items()}
        for new in renamed.values():
            if new.endswith(".index.json"):  # a sharded fp16 set's index, rewritten to the plain shard names
                sha_by_rel[new] = mf.sha256_file(staged / new, ctx.cancel)
        if layout.flavour == "invokeai":
            sizes = {r: (staged / r).stat().st_size for r in rels if (staged / r).is_file()}
            for f in compat23.fix_diffusers_folder(staged):  # names 2.3.5's diffusers/transformers load
                rel = f.relative_to(staged).as_posix()
                source_of[rel] = (sha_by_rel.get(rel, ""), sizes.get(rel, -1))
                sha_by_rel[rel] = mf.sha256_file(f, ctx.cancel)
    stanza = _stanza_or_none(kind, pr, dest, spec, ctx, vae, single=bool(single), source_path=subject)
    files = tuple(
        mf.FileRecord(layout.relative(dest / rel) if not single else layout.relative(dest), file_size(src_path, rel, single),
                      sha_by_rel.get(rel, ""), 0, *source_of.get(rel, ("", -1)))
        for rel in (rels if not single else [single])
    )
    m = mf.Manifest(name=name, key=spec.key, source=source_text, kind=kind, format=pr.format if single else "diffusers",
                    path=layout.relative(dest), files=files, revision=revision, state="placed", stanza=stanza)
    mf.write_manifest(layout, m)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():  # a broken earlier copy of this same model (its manifest said so), or the same HF snapshot: replace it
        remove_path(layout, dest)
    os.replace(src_path, dest)
    if single:
        shutil.rmtree(staged, ignore_errors=True)
    if kind == "vae" and hub_repo and revision and not single and layout.flavour == "invokeai":
        write_hf_ref(layout, hub_repo, revision)
    m = refresh_mtimes(layout, m)
    mf.write_manifest(layout, m)
    return register(m, ctx)


def write_hf_ref(layout, repo_id: str, commit: str) -> None:
    """``models/hub/models--org--name/refs/main`` = the commit we placed (huggingface_hub 0.14 resolves ``main``
    through it offline; without it 2.3.5 cannot load the repo)."""
    from invokeai_model_install.root.atomic import atomic_write_text

    atomic_write_text(layout.hf_repo_dir(repo_id) / "refs" / "main", commit)


def _stanza_or_none(kind: str, pr: Any, dest: Path, spec: Spec, ctx: ItemContext, vae: Any, *, single: bool,
                    source_path: Path) -> dict:
    """The models.yaml stanza, or ``{}`` for what a 2.3 root must not list (VAE, LoRA, embedding, ControlNet,
    a model 2.3.5 cannot run that the user insisted on keeping)."""
    if kind not in REGISTERED_KINDS or compat23.refusal(kind, pr.base) is not None:
        return {}
    return stanza_for(kind, pr, dest, spec, ctx, vae, single=single, source_path=source_path)


def _install_local(path: Path, spec: Spec, ctx: ItemContext, *, convert: bool, conv_key: str, vae: Any,
                   broken: dict[str, mf.Manifest]) -> Installed:
    """A file or folder on disk: it stays where it is (unless converted)."""
    layout = ctx.layout
    ctx.stage("probe", str(path))
    check_safety(path, ctx, spec.label, delete_on_danger=False)
    pr = probe(path)
    if ctx.plan.in_place:  # a UI's own models tree: register what this root can use, leave the rest, never convert
        convert = False
        from invokeai_model_install.identify.families import invokeai23_refusal

        why = pr.reason if pr.kind == "unknown" else (
            invokeai23_refusal(pr.kind, pr.base, pr.variant) if layout.flavour == "invokeai" else None)
        if why:
            return Installed("", path, pr.kind, "skipped", f"left where it is, not registered: {why}")
    if pr.kind == "unknown":
        raise ProbeError(f"{path} is not a model this installer knows ({pr.reason or 'unrecognised contents'})",
                         "check the file; only Stable Diffusion models, LoRA, VAE, embeddings and ControlNet are handled")
    refused = None
    if layout.flavour == "invokeai":
        _refuse_newer_family(pr.kind, pr, str(path), None)
        refused = compat23.refusal(pr.kind, pr.base)
        if refused is not None and not ctx.plan.download_unsupported:
            raise compat23.Unsupported(f"{path}: {refused}")
    if convert and pr.kind == "main" and pr.format != "diffusers":
        ctx.stage("verify", "hashing the source")
        digest = mf.sha256_file(path, ctx.cancel)
        return _convert_and_register(path, spec, ctx, conv_key, vae, source_sha={layout.relative(path): digest}, reuse=broken.get(conv_key),
                                     probe_result=pr, source_text=str(path))
    if pr.kind == "main" and path.is_dir() and refused is None and compat23.needs_fix(path):
        ctx.note(f"{path.name}: its VAE or text encoder weights carry names InvokeAI 2.3.5 cannot load (saved by a newer "
                 "diffusers/transformers); it is registered where it is, unchanged - import it from the hub, or copy it into "
                 f"{layout.relative(layout.kind_dir('main-diffusers'))}/ and add that copy, to get the names fixed")
    old = broken.get(spec.key)
    name = old.name if old is not None else free_name(ctx, spec.base_name)
    fixed_from: dict[Path, tuple[str, int]] = {}
    if pr.kind in ("lora", "embedding") and ctx.plan.in_place:
        folder = layout.relative(layout.kind_dir(pr.kind))
        # neutral wording: the choice comes from --in-place, the form's checkbox or the web page's
        ctx.note(f"{path.name}: registered in place (recorded where it is); InvokeAI 2.3.5 reads {pr.kind}s only from "
                 f"{folder}/, so it does not list this one (link or copy the file there to use it in InvokeAI)")
    elif pr.kind in ("lora", "embedding") and layout.flavour == "invokeai":
        # 2.3.5 finds LoRAs only in ROOT/loras and embeddings only in ROOT/embeddings (no stanzas): link or copy there
        original = path
        path = _place_copy(path, layout.kind_dir(pr.kind), layout, ctx)
        if pr.kind == "embedding" and path.is_file():
            before = (mf.sha256_file(path, ctx.cancel), path.stat().st_size)
            if compat23.fix_embedding(path):
                fixed_from[path.absolute()] = before  # a later scan still knows the user's original by its hash
                ctx.note(f"{path.name}: added the sd_checkpoint fields InvokeAI 2.3.5 reads (without them it fails to load "
                         f"any model); your {original} is unchanged")
    ctx.stage("verify", "hashing")
    files = mf.record_files(layout, [path], cancel=ctx.cancel)
    files = tuple(dataclasses.replace(f, source_sha256=fixed_from[layout.absolute(f.path).absolute()][0],
                                      source_size=fixed_from[layout.absolute(f.path).absolute()][1])
                  if layout.absolute(f.path).absolute() in fixed_from else f for f in files)
    ctx.emit(ItemVerified(files=len(files), bytes=sum(f.size for f in files)))
    stanza = _stanza_or_none(pr.kind, pr, path, spec, ctx, vae, single=not path.is_dir(), source_path=path)
    m = mf.Manifest(name=name, key=spec.key, source=str(spec.source.path) if hasattr(spec.source, "path") else str(path),
                    kind=pr.kind, format=pr.format, path=layout.relative(path), files=files, state="placed", stanza=stanza)
    mf.write_manifest(layout, m)
    return register(m, ctx)


def _place_copy(path: Path, folder: Path, layout: Any, ctx: ItemContext) -> Path:
    """``path`` inside ``folder`` (it stays when already there): a hard link when the file system allows, else a copy.
    The user's file is never moved."""
    try:
        path.resolve().relative_to(folder.resolve())
        return path
    except ValueError:
        pass
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / path.name
    n = 2
    while dest.exists():
        if dest.is_file() and path.is_file() and dest.stat().st_size == path.stat().st_size \
                and mf.sha256_file(dest, ctx.cancel) == mf.sha256_file(path, ctx.cancel):
            return dest  # the same bytes are there already
        dest = folder / f"{path.stem}-{n}{path.suffix}"
        n += 1
    if path.is_dir():
        shutil.copytree(path, dest, copy_function=_link_or_copy)
    else:
        _link_or_copy(str(path), str(dest))
    ctx.note(f"{path.name}: placed in {layout.relative(dest)} (where InvokeAI 2.3.5 looks for it)")
    return dest


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _convert_and_register(src: Path, spec: Spec, ctx: ItemContext, conv_key: str, vae: Any, *, source_sha: dict[str, str],
                          reuse: mf.Manifest | None = None,
                          probe_result: ProbeResult | None = None, revision: str | None = None, source_text: str | None = None) -> Installed:
    """Convert a single-file main model into ``models/converted_ckpts/<name>`` and register that."""
    layout = ctx.layout
    pr = probe_result or probe(src)
    prediction = prediction_type(pr, ctx, spec.label)
    name, dest = choose_dir_dest(ctx, spec.base_name, layout.converted_dir, reuse=reuse)
    tmp = layout.partial_dir / f"convert-{key_hash(conv_key)}"
    if tmp.exists():
        shutil.rmtree(tmp)
    ctx.stage("convert", f"{src.name} -> {layout.relative(dest)}")
    started = time.monotonic()
    def forward(event: Event) -> None:
        # the converter reports its temporary folder; ItemConverted with the final path comes from here
        if not isinstance(event, ItemConverted):
            ctx.emit(event)

    kwargs = dict(probe=pr, precision=ctx.plan.precision, device=ctx.plan.device, prediction_type=prediction, on_event=forward,
                  cancel=ctx.cancel)  # checked between tensors: a cancel stops a conversion promptly
    convert_answering(src, tmp, ctx, spec.label, **kwargs)
    ctx.check_cancel()
    ctx.emit(ItemConverted(path=layout.relative(dest), seconds=time.monotonic() - started))
    files = mf.record_files(layout, [tmp], cancel=ctx.cancel)
    # record paths as they will be after the move
    prefix_tmp, prefix_dest = layout.relative(tmp), layout.relative(dest)
    files = tuple(dataclasses.replace(f, path=prefix_dest + f.path[len(prefix_tmp):]) for f in files)
    new_pr = probe(tmp)
    stanza = _stanza_or_none("main", new_pr, dest, spec, ctx, vae, single=False, source_path=src)
    m = mf.Manifest(name=name, key=conv_key, source=source_text or spec.label, kind="main", format="diffusers",
                    path=prefix_dest, files=files, revision=revision, state="placed",
                    source_sha256=tuple(sorted(source_sha.items())), stanza=stanza)
    mf.write_manifest(layout, m)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        remove_path(layout, dest)
    os.replace(tmp, dest)
    m = refresh_mtimes(layout, m)
    mf.write_manifest(layout, m)
    return register(m, ctx)


def _refuse_newer_family(kind: str, pr: Any, label: str, staged: Path | None) -> None:
    """SD 3/3.5, FLUX.1 ...: one line saying InvokeAI 2.3 cannot run it (the download is not kept)."""
    from invokeai_model_install.identify.families import invokeai23_refusal

    why = invokeai23_refusal(kind, pr.base, pr.variant)
    if why is not None:
        if staged is not None:
            shutil.rmtree(staged, ignore_errors=True)
        raise ProbeError(why[0].upper() + why[1:], "ComfyUI or a newer InvokeAI loads it; nothing was installed")


def _resume_from_manifest(m: mf.Manifest, spec: Spec, ctx: ItemContext, vae: Any) -> Installed | None:
    """An earlier run's work: "already installed", or finish its registration; None when its files are broken."""
    layout = ctx.layout
    problems = mf.verify_manifest(layout, m, cancel=ctx.cancel)
    if problems:
        ctx.note(f"{m.name}: {len(problems)} file(s) missing or changed since the last run ({problems[0].path}); installing again")
        return None
    stanza = ctx.registry.load().get(m.name)
    if m.state == "installed" and (m.kind in UNREGISTERED_KINDS or not layout.has_registry):
        return Installed(m.name, layout.absolute(m.path), m.kind, "skipped", "already installed (files for other UIs)")
    if m.state == "installed" and not m.stanza and stanza is None:
        return Installed(m.name, layout.absolute(m.path), m.kind, "skipped", "already installed")
    if m.state == "installed" and stanza is not None and same_place(layout, stanza, m):
        if vae is not None and stanza.get("vae") != vae_for_stanza(stanza, vae):
            with ctx.registry.transaction() as doc:
                s = doc.get(m.name)
                if s is not None:
                    s["vae"] = vae_for_stanza(s, vae)
        return Installed(m.name, layout.absolute(m.path), m.kind, "skipped", "already installed")
    # files in place, stanza missing (killed before registering, or removed without purge): register again
    if vae is not None and m.stanza:
        m = dataclasses.replace(m, stanza={**m.stanza, "vae": vae_for_stanza(m.stanza, vae)})
    return register(m, ctx)


def default_settings(settings: DownloadSettings | None) -> DownloadSettings:
    """``settings``, or ``DownloadSettings.from_env()`` (read when first needed: local-only plans never read it)."""
    if settings is not None:
        return settings
    return DownloadSettings.from_env()


def resolve_remote(spec: Spec, settings: DownloadSettings | None, precision: str) -> Resolved:
    """``Resolved`` for a hub/URL source, or a starter (trying its fallback repos)."""
    from invokeai_model_install.net import urls

    settings = default_settings(settings)
    if isinstance(spec.source, UrlSource):
        return urls.resolve_url(spec.source, settings)
    from invokeai_model_install.net import hub

    if spec.starter is not None:
        s = spec.starter
        first: InstallerError | None = None
        for repo in s.repo_ids:
            try:
                resolved = hub.resolve_hub(HubSource(repo_id=repo, path_in_repo=s.file), settings, precision)
            except NotFoundError as err:
                first = first or err
                continue
            # the catalogue's sha256 pin, not the (mirror) server's LFS hash, is the reference
            return apply_pins(resolved, catalogue_pins(s, resolved), s.key, what="the starter catalogue")
        assert first is not None
        if len(s.repo_ids) > 1:
            raise NotFoundError(f"{first.message} (also tried {', '.join(s.repo_ids[1:])})", first.hint)
        raise first
    if not isinstance(spec.source, HubSource):
        raise ValueError(f"{spec.label}: a local source has nothing to download")
    return hub.resolve_hub(spec.source, settings, precision)


def _download(resolved: Any, staged: Path, ctx: ItemContext) -> dict[str, str]:
    """Fetch into ``staged`` (files already there and verified are kept); returns sha256 by relpath."""
    from invokeai_model_install.net import engine

    ctx.settings = default_settings(ctx.settings)
    staged.mkdir(parents=True, exist_ok=True)
    ctx.stage("download", f"{len(resolved.files)} file(s)")
    result = engine.download(resolved, staged, partial_dir=ctx.layout.partial_dir, settings=ctx.settings,
                               on_event=ctx.emit, cancel=ctx.cancel)
    ctx.fetched += int(result.fetched_bytes or 0)
    sha = {str(rel): digest for rel, digest in result.sha256.items()}
    for f in resolved.files:
        if f.relpath not in sha:  # the engine names every file it verified; hash anything it did not
            sha[f.relpath] = mf.sha256_file(staged / f.relpath, ctx.cancel)
    return sha
