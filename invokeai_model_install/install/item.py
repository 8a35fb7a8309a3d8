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

import contextlib
import dataclasses
import hashlib
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from invokeai_model_install.root import manifest as mf
from invokeai_model_install.errors import (
    Cancelled,
    ConfigError,
    InstallerError,
    NotFoundError,
    ProbeError,
    QuestionUnanswered,
    UnknownModelError,
    UnsafeFileError,
)
from invokeai_model_install.events import (
    Event,
    ItemConverted,
    ItemNote,
    ItemRegistered,
    ItemRemoved,
    ItemVerified,
    QuestionAsked,
    StageChanged,
)
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.install.plan import InstallPlan

MODEL_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin")

Ask = Callable[[QuestionAsked], Optional[str]]


# --- values ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkItem:
    """One unit of work.  ``action`` is ``install``, ``remove`` or ``invalid`` (``error`` says why).

    ``source`` is a :mod:`sources` value for imports; ``starter`` a catalogue entry.
    """

    id: str
    label: str
    action: str = "install"
    line: str = ""
    source: Any = None
    starter: Any = None
    error: Optional[InstallerError] = None


@dataclass(frozen=True)
class ItemOutcome:
    """How one item ended: ``status`` is installed, skipped, failed or removed."""

    item: str
    label: str
    status: str
    name: str = ""
    message: str = ""
    hint: str = ""
    error: str = ""
    path: str = ""
    fetched_bytes: int = 0

    def one_line(self) -> str:
        text = f"{self.label}: {self.message}" if self.message else self.label
        if self.hint:
            text += f" ({self.hint})"
        return " ".join(text.split())


@dataclass
class ItemContext:
    """What one item needs: the root, settings, plan options, and how to report and ask."""

    layout: RootLayout
    plan: InstallPlan
    settings: Any
    emit: Callable[[Event], None]
    ask: Optional[Ask] = None
    cancel: Any = None  # threading.Event or multiprocessing.Event
    fetched: int = 0
    qcount: list[int] = field(default_factory=lambda: [0])

    def stage(self, stage: str, detail: str = "") -> None:
        self.check_cancel()
        self.emit(StageChanged(stage=stage, detail=detail))

    def note(self, message: str) -> None:
        self.emit(ItemNote(message=message))

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("cancelled by the user")

    @property
    def registry(self):
        from invokeai_model_install.root.registry import Registry

        return Registry(self.layout.models_yaml)


# --- identity of a source ----------------------------------------------------------------------


def hub_key(repo_id: str, subfolder: str | None = None, revision: str | None = None, path_in_repo: str | None = None) -> str:
    key = f"hub:{repo_id}"
    if subfolder:
        key += f":{subfolder}"
    if path_in_repo:
        key += f"/{path_in_repo}"
    if revision:
        key += f"@{revision}"
    return key


def source_key(source: Any) -> str:
    """A stable string naming what a source installs (manifests are looked up by it)."""
    kind = type(source).__name__
    if kind == "HubSource":
        return hub_key(source.repo_id, source.subfolder, source.revision, source.path_in_repo)
    if kind == "UrlSource":
        from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

        # tokens in the query string are credentials, not identity
        parts = urlsplit(source.url)
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if "token" not in k.lower()])
        return "url:" + urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
    path = Path(os.path.expanduser(str(source.path)))
    try:
        path = path.resolve()
    except OSError:
        path = path.absolute()
    return f"file:{path}"


def _key_hash(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


def staging_dir(layout: RootLayout, key: str) -> Path:
    """Where an item's bytes land before they are placed (kept across runs for resume)."""
    return layout.partial_dir / "staging" / _key_hash(key)


# --- the pipeline ----------------------------------------------------------------------------


@dataclass
class _Spec:
    """What to install for one item, before any network access."""

    key: str
    label: str
    base_name: str
    source: Any = None  # sources.* value; None for a starter (tries its repo ids)
    starter: Any = None
    description: str = ""
    want_kind: str | None = None  # "vae" for a starter's VAE


@dataclass
class _Installed:
    name: str
    path: Path
    kind: str
    status: str  # installed | skipped
    message: str = ""


def run_item(item: WorkItem, ctx: ItemContext) -> ItemOutcome:
    """Run one item; raises InstallerError (the worker reports it as ItemFailed)."""
    if item.action == "invalid":
        assert item.error is not None
        raise item.error
    if item.action == "remove":
        return remove_model(item, ctx)
    if item.action == "convert-installed":
        from invokeai_model_install.install.convert_installed import convert_installed_item

        return convert_installed_item(item, ctx)
    spec = spec_for(item, ctx.plan)
    before = ctx.fetched
    if item.starter is not None and not mf.find_by_key(ctx.layout, spec.key):
        older = _registered_elsewhere(item.starter, ctx)
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


def spec_for(item: WorkItem, plan: InstallPlan) -> _Spec:
    """The identity, label and base name of an install item (no I/O)."""
    if item.starter is not None:
        s = item.starter
        return _Spec(
            key=hub_key(s.repo_id, None, None, s.file),
            label=item.label,
            base_name=s.key,
            starter=s,
            description=s.description,
        )
    src = item.source
    kind = type(src).__name__
    if kind == "HubSource":
        name = src.repo_id.split("/")[-1]
        if src.path_in_repo:
            name = Path(src.path_in_repo).stem
        elif src.subfolder:
            name = f"{name}-{src.subfolder.strip('/').split('/')[-1]}"
        base = name
    elif kind == "UrlSource":
        from urllib.parse import unquote, urlsplit

        base = Path(unquote(urlsplit(src.url).path)).stem or "model"
    else:
        p = Path(str(src.path))
        base = p.name if p.is_dir() else p.stem
    return _Spec(key=source_key(src), label=item.label, base_name=base, source=src)


def _install_starter_vae(starter: Any, ctx: ItemContext) -> Any:
    """Install a catalogue VAE (hub repo) and return the stanza value that references it."""
    ref = starter.vae
    if ref.path:
        return {"path": ref.path}
    from invokeai_model_install.net import sources

    src = sources.HubSource(repo_id=ref.repo_id, subfolder=ref.subfolder)
    spec = _Spec(
        key=source_key(src),
        label=f"VAE {ref.repo_id}",
        base_name=ref.repo_id.split("/")[-1],
        source=src,
        description=f"VAE {ref.repo_id} (for {starter.key})",
        want_kind="vae",
    )
    ctx.stage("vae", ref.repo_id)
    done = _install(spec, ctx, convert=False, vae=None)
    return {"path": ctx.layout.relative(done.path)}


def _install(spec: _Spec, ctx: ItemContext, *, convert: bool, vae: Any) -> _Installed:
    # Two installers on one root may pick the same model: the second waits, then finds it installed.
    with _source_lock(ctx, spec):
        return _install_locked(spec, ctx, convert=convert, vae=vae)


@contextlib.contextmanager
def _source_lock(ctx: ItemContext, spec: _Spec):
    """An inter-process lock per source (file lock under ``models/.partial/locks``), cancellable while waiting."""
    from filelock import FileLock, Timeout

    folder = ctx.layout.partial_dir / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / f"{_key_hash(spec.key)}.lock"))
    told = False
    while True:
        try:
            lock.acquire(timeout=0.5)
            break
        except Timeout:
            ctx.check_cancel()
            if not told:
                ctx.stage("wait", f"another installer is working on {spec.label}")
                told = True
    try:
        yield
    finally:
        lock.release()


def _install_locked(spec: _Spec, ctx: ItemContext, *, convert: bool, vae: Any) -> _Installed:
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

    local = _local_path(spec.source)
    if local is not None:
        return _install_local(local, spec, ctx, convert=convert, conv_key=conv_key, vae=vae, broken=broken)

    # 1. resolve + download into staging
    ctx.stage("resolve", spec.label)
    resolved = resolve_remote(spec, ctx.settings, ctx.plan.precision)
    staged = staging_dir(layout, spec.key)
    sha_by_rel = _download(resolved, staged, ctx)
    ctx.stage("verify")
    total = sum(int(getattr(f, "size", 0) or 0) for f in resolved.files)
    ctx.emit(ItemVerified(files=len(resolved.files), bytes=total))

    # 2. probe + safety
    ctx.stage("probe")
    rels = [f.relpath for f in resolved.files]
    single = _single_model_file(rels)
    subject = staged / single if single else staged
    _safety(subject, ctx, spec.label, delete_on_danger=True)  # before anything reads it
    pr = _probe(subject, spec.label)
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
    if single:
        folder = layout.kind_dir(kind)
        name, dest = _choose_file_dest(ctx, spec.base_name, folder, Path(single).name, reuse=broken.get(spec.key))
        src_path = subject
    else:
        folder = layout.kind_dir("main-diffusers" if kind == "main" else kind)
        name, dest = _choose_dir_dest(ctx, spec.base_name, folder, reuse=broken.get(spec.key))
        src_path = staged
    stanza = _stanza_for(kind, pr, dest, spec, ctx, vae, single=bool(single), source_path=subject)
    if not single:
        renamed = _strip_variants(staged, rels)
        rels = [renamed.get(r, r) for r in rels]
        sha_by_rel = {renamed.get(r, r): d for r, d in sha_by_rel.items()}
    files = tuple(
        mf.FileRecord(layout.relative(dest / rel) if not single else layout.relative(dest), _size(src_path, rel, single),
                      sha_by_rel.get(rel, ""), 0)
        for rel in (rels if not single else [single])
    )
    m = mf.Manifest(name=name, key=spec.key, source=source_text, kind=kind, format=pr.format if single else "diffusers",
                    path=layout.relative(dest), files=files, revision=revision, state="placed", stanza=stanza)
    mf.write_manifest(layout, m)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():  # a broken earlier copy of this same model (its manifest said so): replace it
        _remove_path(layout, dest)
    os.replace(src_path, dest)
    if single:
        shutil.rmtree(staged, ignore_errors=True)
    m = _refresh_mtimes(layout, m)
    mf.write_manifest(layout, m)
    return _register(m, ctx)


def _local_path(source: Any) -> Path | None:
    if source is None:
        return None
    if type(source).__name__ in ("LocalFileSource", "LocalDiffusersSource"):
        return Path(os.path.expanduser(str(source.path))).absolute()
    return None


def _install_local(path: Path, spec: _Spec, ctx: ItemContext, *, convert: bool, conv_key: str, vae: Any,
                   broken: dict[str, mf.Manifest]) -> _Installed:
    """A file or folder on disk: it stays where it is (unless converted)."""
    layout = ctx.layout
    ctx.stage("probe", str(path))
    _safety(path, ctx, spec.label, delete_on_danger=False)
    pr = _probe(path, spec.label)
    if pr.kind == "unknown":
        raise ProbeError(f"{path} is not a model this installer knows ({pr.reason or 'unrecognised contents'})",
                         "check the file; only Stable Diffusion models, LoRA, VAE, embeddings and ControlNet are handled")
    if convert and pr.kind == "main" and pr.format != "diffusers":
        ctx.stage("verify", "hashing the source")
        digest = mf.sha256_file(path, ctx.cancel)
        return _convert_and_register(path, spec, ctx, conv_key, vae, source_sha={layout.relative(path): digest}, reuse=broken.get(conv_key),
                                     probe_result=pr, source_text=str(path))
    ctx.stage("verify", "hashing")
    files = mf.record_files(layout, [path], cancel=ctx.cancel)
    ctx.emit(ItemVerified(files=len(files), bytes=sum(f.size for f in files)))
    old = broken.get(spec.key)
    name = old.name if old is not None else _free_name(ctx, spec.base_name)
    stanza = _stanza_for(pr.kind, pr, path, spec, ctx, vae, single=not path.is_dir(), source_path=path)
    m = mf.Manifest(name=name, key=spec.key, source=str(path), kind=pr.kind, format=pr.format,
                    path=layout.relative(path), files=files, state="placed", stanza=stanza)
    mf.write_manifest(layout, m)
    return _register(m, ctx)


def _convert_and_register(src: Path, spec: _Spec, ctx: ItemContext, conv_key: str, vae: Any, *, source_sha: dict[str, str],
                          reuse: mf.Manifest | None = None,
                          probe_result: Any = None, revision: str | None = None, source_text: str | None = None) -> _Installed:
    """Convert a single-file main model into ``models/diffusers/<name>`` and register that."""
    from invokeai_model_install.convert import checkpoint as conv

    layout = ctx.layout
    pr = probe_result or _probe(src, spec.label)
    prediction = _prediction_type(pr, ctx, spec.label)
    name, dest = _choose_dir_dest(ctx, spec.base_name, layout.kind_dir("main-diffusers"), reuse=reuse)
    tmp = layout.partial_dir / f"convert-{_key_hash(conv_key)}"
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
    try:
        try:
            conv.convert_checkpoint(src, tmp, **kwargs)
        except QuestionUnanswered:
            if prediction is not None:
                raise
            kwargs["prediction_type"] = _ask_prediction(ctx, spec.label)
            if tmp.exists():
                shutil.rmtree(tmp)
            conv.convert_checkpoint(src, tmp, **kwargs)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    ctx.check_cancel()
    ctx.emit(ItemConverted(path=layout.relative(dest), seconds=time.monotonic() - started))
    files = mf.record_files(layout, [tmp], cancel=ctx.cancel)
    # record paths as they will be after the move
    prefix_tmp, prefix_dest = layout.relative(tmp), layout.relative(dest)
    files = tuple(dataclasses.replace(f, path=prefix_dest + f.path[len(prefix_tmp):]) for f in files)
    new_pr = _probe(tmp, spec.label)
    stanza = _stanza_for("main", new_pr, dest, spec, ctx, vae, single=False, source_path=src)
    m = mf.Manifest(name=name, key=conv_key, source=source_text or spec.label, kind="main", format="diffusers",
                    path=prefix_dest, files=files, revision=revision, state="placed",
                    source_sha256=tuple(sorted(source_sha.items())), stanza=stanza)
    mf.write_manifest(layout, m)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        _remove_path(layout, dest)
    os.replace(tmp, dest)
    m = _refresh_mtimes(layout, m)
    mf.write_manifest(layout, m)
    return _register(m, ctx)


def _resume_from_manifest(m: mf.Manifest, spec: _Spec, ctx: ItemContext, vae: Any) -> _Installed | None:
    """An earlier run's work: "already installed", or finish its registration; None when its files are broken."""
    layout = ctx.layout
    problems = mf.verify_manifest(layout, m, cancel=ctx.cancel)
    if problems:
        ctx.note(f"{m.name}: {len(problems)} file(s) missing or changed since the last run ({problems[0].path}); installing again")
        return None
    stanza = ctx.registry.load().get(m.name)
    if m.state == "installed" and stanza is not None and _same_place(layout, stanza, m):
        if vae is not None and stanza.get("vae") != _vae_for_stanza(stanza, vae):
            with ctx.registry.transaction() as doc:
                s = doc.get(m.name)
                if s is not None:
                    s["vae"] = _vae_for_stanza(s, vae)
        return _Installed(m.name, layout.absolute(m.path), m.kind, "skipped", "already installed")
    # files in place, stanza missing (killed before registering, or removed without purge): register again
    if vae is not None and m.stanza:
        m = dataclasses.replace(m, stanza={**m.stanza, "vae": _vae_for_stanza(m.stanza, vae)})
    return _register(m, ctx)


def _registered_elsewhere(starter: Any, ctx: ItemContext) -> _Installed | None:
    """A starter already in models.yaml without a manifest (installed by an older installer):
    under its own name, or as a stanza that points at its repo.  Not downloaded again."""
    for name, stanza in ctx.registry.load().items():
        if mf.read_manifest(ctx.layout, name) is not None:
            continue
        if name == starter.key or stanza.get("repo_id") in starter.repo_ids:
            stored = stanza.get("path") or stanza.get("weights") or ""
            if stored and not ctx.layout.absolute(stored).exists():
                continue  # a stanza whose files are gone is not an installation
            where = ctx.layout.absolute(stored) if stored else ctx.layout.root
            return _Installed(name, where, "main", "skipped", f"already in models.yaml as {name}")
    return None


def _same_place(layout: RootLayout, stanza: dict, m: mf.Manifest) -> bool:
    stored = stanza.get("path") or stanza.get("weights")
    return isinstance(stored, str) and layout.absolute(stored).absolute() == layout.absolute(m.path).absolute()


def _register(m: mf.Manifest, ctx: ItemContext) -> _Installed:
    """Add the manifest's stanza to models.yaml (unique name, never overwriting) and mark it installed."""
    layout = ctx.layout
    ctx.stage("register")
    stanza = dict(m.stanza)
    default_wanted = bool(stanza.pop("default", False))
    with ctx.registry.transaction() as doc:
        name = m.name
        existing = doc.get(name)
        if existing is not None and _same_place(layout, existing, m):
            pass  # registered by the run that was killed before its manifest said so
        else:
            if existing is not None:
                name = doc.unique_name(m.name)
            if default_wanted and not any(s.get("default") is True for s in doc.stanzas.values()):
                stanza["default"] = True
            elif "default" not in stanza and m.kind == "main":
                stanza["default"] = False
            doc.add(name, stanza)
    if name != m.name:
        m = mf.rename_manifest(layout, m, name)
    m = dataclasses.replace(m, state="installed")
    mf.write_manifest(layout, m)
    ctx.emit(ItemRegistered(name=name, path=m.path))
    return _Installed(name, layout.absolute(m.path), m.kind, "installed")


# --- pieces ------------------------------------------------------------------------------------


def default_settings(settings: Any) -> Any:
    """``settings``, or ``DownloadSettings.from_env()`` (read when first needed: local-only plans never import it)."""
    if settings is not None:
        return settings
    from invokeai_model_install.net.download import DownloadSettings

    return DownloadSettings.from_env()


def resolve_remote(spec: _Spec, settings: Any, precision: str) -> Any:
    """``download.Resolved`` for a hub/URL source, or a starter (trying its fallback repos)."""
    from invokeai_model_install.net import download, sources

    settings = default_settings(settings)
    if type(spec.source).__name__ == "UrlSource":
        return download.resolve_url(spec.source, settings)
    from invokeai_model_install.net import hub

    if spec.starter is not None:
        s = spec.starter
        first: InstallerError | None = None
        for repo in s.repo_ids:
            try:
                return hub.resolve_hub(sources.HubSource(repo_id=repo, path_in_repo=s.file), settings, precision)
            except NotFoundError as err:
                first = first or err
        assert first is not None
        if len(s.repo_ids) > 1:
            raise NotFoundError(f"{first.message} (also tried {', '.join(s.repo_ids[1:])})", first.hint)
        raise first
    return hub.resolve_hub(spec.source, settings, precision)


def _download(resolved: Any, staged: Path, ctx: ItemContext) -> dict[str, str]:
    """Fetch into ``staged`` (files already there and verified are kept); returns sha256 by relpath."""
    from invokeai_model_install.net import download

    ctx.settings = default_settings(ctx.settings)
    staged.mkdir(parents=True, exist_ok=True)
    ctx.stage("download", f"{len(resolved.files)} file(s)")
    result = download.download(resolved, staged, partial_dir=ctx.layout.partial_dir, settings=ctx.settings,
                               on_event=ctx.emit, cancel=ctx.cancel)
    ctx.fetched += int(result.fetched_bytes or 0)
    sha = {str(rel): digest for rel, digest in result.sha256.items()}
    for f in resolved.files:
        if f.relpath not in sha:  # the engine names every file it verified; hash anything it did not
            sha[f.relpath] = mf.sha256_file(staged / f.relpath, ctx.cancel)
    return sha


_VARIANT_NAME = re.compile(r"^(?P<stem>[^/]+)\.(?P<variant>fp16)\.(?P<ext>safetensors|bin)$")


def _strip_variants(folder: Path, rels: list[str]) -> dict[str, str]:
    """Rename ``x.fp16.safetensors`` to ``x.safetensors`` in a downloaded folder; returns old -> new relpaths.

    A diffusers folder whose weights carry the variant suffix loads only with
    ``variant="fp16"``; with plain names it loads with no arguments (what InvokeAI
    does).  Sharded sets (an index json) keep their names: the index lists them.
    """
    renamed: dict[str, str] = {}
    present = set(rels)
    for rel in rels:
        parent, _, name = rel.rpartition("/")
        m = _VARIANT_NAME.match(name)
        if not m:
            continue
        plain = f"{m['stem']}.{m['ext']}"
        new = f"{parent}/{plain}" if parent else plain
        if new in present or any(r.startswith(f"{parent}/") and r.endswith(".index.json") for r in rels if parent):
            continue
        os.replace(folder / rel, folder / new)
        renamed[rel] = new
    return renamed


def _single_model_file(rels: list[str]) -> str | None:
    """The relpath when the download is one model file (not a folder of components)."""
    models = [r for r in rels if r.lower().endswith(MODEL_SUFFIXES)]
    if len(rels) == 1 and models:
        return rels[0]
    if len(models) == 1 and not any(Path(r).name in ("config.json", "model_index.json") for r in rels):
        return models[0]
    return None


def _probe(path: Path, label: str) -> Any:
    from invokeai_model_install.identify import probe

    return probe.probe(path)


def _safety(path: Path, ctx: ItemContext, label: str, *, delete_on_danger: bool) -> None:
    """Refuse dangerous pickles (never loaded); note suspicious ones."""
    from invokeai_model_install.identify import safety

    # Judge files by content, not by name: a pickle renamed .json or .safetensors is still a pickle.
    files = list(safety.candidate_files(path)) if path.is_dir() else [path]
    for f in files:
        verdict = safety.scan(f)
        if verdict.verdict == "dangerous":
            if delete_on_danger:
                _unlink_quiet(f)
            raise UnsafeFileError(f"{label}: {f.name} is a dangerous pickle ({verdict.message}); it was not installed")
        if verdict.verdict == "suspicious":
            ctx.note(f"{f.name}: {verdict.message}")
        if verdict.verdict == "unreadable":
            raise ProbeError(f"{label}: {f.name} cannot be read as a checkpoint ({verdict.message})", "check the file")


def _prediction_type(pr: Any, ctx: ItemContext, label: str) -> str | None:
    """The prediction type to use for an SD-2 main model; asks when undecided."""
    if pr.base != "sd-2" or pr.kind != "main":
        return None
    if pr.prediction_type in ("epsilon", "v"):
        return pr.prediction_type  # the file (or its companion .yaml) says; --prediction-type answers only the undecided
    if ctx.plan.prediction_type:
        return ctx.plan.prediction_type
    return _ask_prediction(ctx, label)


class SkippedByUser(InstallerError):
    """The user answered "skip" to a question about this item."""


def _ask_prediction(ctx: ItemContext, label: str) -> str:
    """Ask the front end for an SD-2 prediction type; no answer -> QuestionUnanswered naming the flag."""
    if ctx.plan.prediction_type:
        return ctx.plan.prediction_type
    ctx.qcount[0] += 1
    q = QuestionAsked(
        qid=f"q{ctx.qcount[0]}-{os.getpid()}",
        kind="prediction_type",
        prompt=f"{label} is a Stable Diffusion 2 model; was it trained for epsilon or v-prediction? "
        "(768-pixel SD-2 models are usually v; 512-pixel base models epsilon)",
        choices=("epsilon", "v", "skip"),
        labels=("epsilon (SD-2 512 base)", "v-prediction (SD-2 768)", "skip this model"),
    )
    answer = None
    if ctx.ask is not None:
        ctx.emit(q)
        answer = ctx.ask(q)
    if answer in ("epsilon", "v"):
        return answer
    if answer == "skip":
        raise SkippedByUser(f"{label}: skipped (prediction type not given)", "")
    raise QuestionUnanswered(
        f"{label}: an SD-2 model whose prediction type cannot be read from the file; it was skipped",
        "answer it with --prediction-type epsilon|v (v for 768-pixel SD-2 models, epsilon for 512-pixel base ones)",
    )


#: (base, variant, prediction) -> (legacy config, width/height)
def legacy_config(pr: Any, prediction: str | None) -> tuple[str, int]:
    """The ``configs/stable-diffusion/*.yaml`` and the image size for a single-file main model."""
    base, variant = pr.base, pr.variant
    if base == "sd-1":
        return ("v1-inpainting-inference.yaml" if variant == "inpaint" else "v1-inference.yaml"), 512
    if base == "sd-2":
        if prediction == "v":
            return "v2-inference-v.yaml", 768
        return "v2-inference.yaml", 512
    if base == "sdxl":
        return "sd_xl_base.yaml", 1024
    if base == "sdxl-refiner":
        return "sd_xl_refiner.yaml", 1024
    return "v1-inference.yaml", 512


def _ensure_legacy_config(layout: RootLayout, name: str) -> Path:
    """The root's copy of a packaged legacy config (copied when missing; a user's edit is kept)."""
    from invokeai_model_install.root import resources

    dest = layout.legacy_configs_dir / name
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(resources.legacy_config_path(name), dest)
    return dest


def _vae_for_stanza(stanza: dict, vae: Any) -> Any:
    """Legacy stanzas take a VAE path string, diffusers stanzas a mapping."""
    if stanza.get("format") == "ckpt" and isinstance(vae, dict) and vae.get("path"):
        return vae["path"]
    return vae


def _stanza_for(kind: str, pr: Any, dest: Path, spec: _Spec, ctx: ItemContext, vae: Any, *, single: bool, source_path: Path) -> dict:
    layout = ctx.layout
    description = spec.description or _describe(kind, pr, spec.label)
    if kind == "main" and single:
        prediction = _prediction_type(pr, ctx, spec.label) if pr.base == "sd-2" else None
        companion = None
        try:
            from invokeai_model_install.identify import probe as probe_mod

            companion = probe_mod.companion_yaml(source_path)
        except Exception:  # a companion is optional; never fail the item for it
            companion = None
        cfg_name, size = legacy_config(pr, prediction)
        config = layout.relative(companion) if companion else layout.relative(_ensure_legacy_config(layout, cfg_name))
        stanza: dict[str, Any] = {
            "description": description,
            "weights": layout.relative(dest),
            "config": config,
            "format": "ckpt",
            "width": size,
            "height": size,
        }
        if vae is not None:
            stanza["vae"] = _vae_for_stanza(stanza, vae)
    elif kind == "main":
        stanza = {"description": description, "format": "diffusers", "path": layout.relative(dest)}
        if vae is not None:
            stanza["vae"] = vae
    else:
        stanza = {"description": description, "type": kind, "format": pr.format, "path": layout.relative(dest)}
    if pr.base:
        stanza["base"] = pr.base
    if spec.starter is not None and spec.starter.default:
        stanza["default"] = True
    return stanza


def _describe(kind: str, pr: Any, label: str) -> str:
    what = {"main": "model", "vae": "VAE", "lora": "LoRA", "embedding": "embedding", "controlnet": "ControlNet"}.get(kind, kind)
    base = {"sd-1": "SD-1", "sd-2": "SD-2", "sdxl": "SDXL", "sdxl-refiner": "SDXL refiner"}.get(pr.base or "", "")
    return f"{base + ' ' if base else ''}{what} imported from {label}"


def _free_name(ctx: ItemContext, base: str) -> str:
    from invokeai_model_install.root.registry import sanitize_name

    taken = set(ctx.registry.names()) | {m.name for m in mf.all_manifests(ctx.layout)}
    name = sanitize_name(base)
    n = 2
    candidate = name
    while candidate in taken:
        candidate = f"{name}-{n}"
        n += 1
    return candidate


def _choose_dir_dest(ctx: ItemContext, base: str, folder: Path, reuse: mf.Manifest | None = None) -> tuple[str, Path]:
    if reuse is not None and ctx.layout.is_inside_models(ctx.layout.absolute(reuse.path)):
        return reuse.name, ctx.layout.absolute(reuse.path)  # repair a damaged install where it is
    from invokeai_model_install.root.registry import sanitize_name

    taken = set(ctx.registry.names()) | {m.name for m in mf.all_manifests(ctx.layout)}
    name = sanitize_name(base)
    candidate, n = name, 2
    while candidate in taken or (folder / candidate).exists():
        candidate = f"{name}-{n}"
        n += 1
    return candidate, folder / candidate


def _choose_file_dest(ctx: ItemContext, base: str, folder: Path, filename: str, reuse: mf.Manifest | None = None) -> tuple[str, Path]:
    if reuse is not None and ctx.layout.is_inside_models(ctx.layout.absolute(reuse.path)):
        return reuse.name, ctx.layout.absolute(reuse.path)
    from invokeai_model_install.root.registry import sanitize_name

    taken = set(ctx.registry.names()) | {m.name for m in mf.all_manifests(ctx.layout)}
    name = sanitize_name(base)
    candidate, n = name, 2
    while candidate in taken:
        candidate = f"{name}-{n}"
        n += 1
    stem, suffix = Path(filename).stem, Path(filename).suffix
    stem = sanitize_name(stem)
    dest, n = folder / f"{stem}{suffix}", 2
    while dest.exists():  # never overwrite a file that is there
        dest = folder / f"{stem}-{n}{suffix}"
        n += 1
    return candidate, dest


def _size(src_path: Path, rel: str, single: str | None) -> int:
    p = src_path if single else src_path / rel
    try:
        return p.stat().st_size
    except OSError:
        return 0


def _refresh_mtimes(layout: RootLayout, m: mf.Manifest) -> mf.Manifest:
    files = []
    for rec in m.files:
        try:
            st = layout.absolute(rec.path).stat()
            files.append(dataclasses.replace(rec, size=st.st_size, mtime_ns=st.st_mtime_ns))
        except OSError:
            files.append(rec)
    return dataclasses.replace(m, files=tuple(files))


def _unlink_quiet(p: Path) -> None:
    try:
        p.unlink()
    except OSError:
        pass


def _remove_path(layout: RootLayout, path: Path) -> None:
    """Delete a file or folder, only ever inside ``models/``."""
    if not layout.is_inside_models(path):
        raise ConfigError(f"refusing to delete {path}: it is outside {layout.models_dir}", "move it away by hand")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


# --- removal ------------------------------------------------------------------------------------


def remove_model(item: WorkItem, ctx: ItemContext) -> ItemOutcome:
    """Drop a model from models.yaml; with ``plan.purge`` delete its files inside ``models/``."""
    from invokeai_model_install.root.registry import purge_model_files  # the same rules as `delete --purge`

    name = item.line
    ctx.stage("remove", name)
    with ctx.registry.transaction() as doc:
        if doc.get(name) is None:
            removed = None
        else:
            removed = doc.remove(name)
            remaining = {k: dict(v) for k, v in doc.stanzas.items()}
    if removed is None:
        if not ctx.plan.purge or mf.read_manifest(ctx.layout, name) is None:
            raise _NotInstalled(f"{name} is not installed")
        removed, remaining = dict(mf.read_manifest(ctx.layout, name).stanza), ctx.registry.load()  # type: ignore[union-attr]
    purged: tuple[str, ...] = ()
    kept_msg = ""
    if ctx.plan.purge:
        deleted, kept = purge_model_files(ctx.layout, removed, remaining)
        purged = tuple(ctx.layout.relative(p) for p in deleted)
        mf.remove_manifest(ctx.layout, name)
        if kept:
            kept_msg = "; kept " + ", ".join(f"{p} ({why})" for p, why in kept)
    ctx.emit(ItemRemoved(name=name, purged=purged))
    msg = "removed" + (f" and deleted {len(purged)} path(s)" if purged else "") + kept_msg
    return ItemOutcome(item=item.id, label=item.label, status="removed", name=name, message=msg)


class _NotInstalled(UnknownModelError):
    """Removal of a name that is not in models.yaml: reported as skipped, not failed."""
