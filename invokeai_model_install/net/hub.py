"""HuggingFace repos -> the exact list of files to fetch (:func:`resolve_hub`).

Metadata comes from huggingface_hub (``HfApi.model_info(files_metadata=True)``: names, sizes, LFS sha256,
the commit sha); the bytes then go through our own engine (:mod:`engine`), pinned to that commit.

Selection rules for a diffusers pipeline (``model_index.json``): the components it lists, each with its
configs/tokenizer files and ONE set of weights - ``.safetensors`` before ``.bin``, the ``fp16`` variant when
``precision="fp16"`` and it exists, sharded sets whole (index json + every shard).  Never flax/onnx/
openvino/msgpack, images, docs, or top-level single checkpoints that duplicate the diffusers folders.
"""

from __future__ import annotations

import json
import posixpath
import re
import urllib.parse
from dataclasses import dataclass

from invokeai_model_install.net import http_errors
from invokeai_model_install.net.settings import DownloadSettings, RemoteFile, Resolved
from invokeai_model_install.net.transport import fetch_small
from invokeai_model_install.net.urls import safe_relpath
from invokeai_model_install.errors import NotFoundError, OfflineError, SourceError
from invokeai_model_install.net.sources import HubSource

_SKIP_SUFFIXES = (
    ".msgpack", ".onnx", ".onnx_data", ".h5", ".tflite", ".ot", ".gguf",
    ".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".svg", ".mp4",
    ".md", ".pdf", ".gitattributes", ".ipynb", ".py",
)
_SKIP_NAMES = {"license", "license.txt", "license.md", "readme", "notice", ".gitattributes", "gitattributes"}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")
_SHARD = re.compile(r"-\d{5}-of-\d{5}")


@dataclass(frozen=True)
class _Sib:
    path: str
    size: int
    sha256: str | None
    blob_id: str | None
    lfs: bool


def _skipped(path: str) -> bool:
    """Files we never fetch: other frameworks, images, docs."""
    name = posixpath.basename(path).lower()
    if name in _SKIP_NAMES or name.endswith(_SKIP_SUFFIXES):
        return True
    if "openvino" in path.lower() or name.startswith(("flax_", "tf_model")) or "/onnx/" in f"/{path.lower()}":
        return True
    return False


def _weight_info(name: str) -> tuple[str, str | None] | None:
    """``(format, variant)`` of a weights file or shard index, None for other files.

    ``diffusion_pytorch_model.fp16.safetensors`` -> ("safetensors", "fp16");
    ``model.safetensors.index.fp16.json`` -> ("safetensors", "fp16");
    ``pytorch_model-00001-of-00002.bin`` -> ("bin", None).
    """
    low = name.lower()
    m = re.match(r"^(.+?)\.(safetensors|bin)\.index(?:\.([a-z0-9_]+))?\.json$", low)
    if m:
        return m.group(2), m.group(3)
    for fmt in ("safetensors", "bin", "ckpt", "pt", "pth"):
        if low.endswith("." + fmt):
            stem = _SHARD.sub("", low[: -len(fmt) - 1])
            parts = stem.split(".")
            variant = parts[-1] if len(parts) > 1 else None
            return fmt, variant
    return None


def _pick_weights(files: list[_Sib], precision: str) -> list[_Sib]:
    """One set of weights from a component folder's files (see the module docstring)."""
    classified = [(f, _weight_info(posixpath.basename(f.path))) for f in files]
    weights = [(f, info) for f, info in classified if info is not None]
    if not weights:
        return []
    variants = ["fp16", None] if precision == "fp16" else [None, "fp16"]
    for variant in variants:
        for fmt in ("safetensors", "bin", "ckpt", "pt", "pth"):
            chosen = [f for f, (wf, wv) in weights if wf == fmt and wv == variant]
            if chosen:
                return chosen
    # only exotic variants (e.g. "ema-only"): take the first format's files of the first variant
    f0, (fmt0, var0) = weights[0]
    return [f for f, (wf, wv) in weights if wf == fmt0 and wv == var0]


def _component(files: list[_Sib], precision: str) -> list[_Sib]:
    """Config/tokenizer files plus one set of weights of one folder."""
    usable = [f for f in files if not _skipped(f.path)]
    other = [f for f in usable if _weight_info(posixpath.basename(f.path)) is None]
    return other + _pick_weights(usable, precision)


def _components_of(model_index: dict) -> list[str]:
    """Component folder names listed in ``model_index.json`` (``[library, class]`` values, not nulls)."""
    names = []
    for key, value in model_index.items():
        if key.startswith("_"):
            continue
        if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] is not None and value[1] is not None:
            names.append(key)
    return names


def _file_url(endpoint: str, repo_id: str, commit: str, path: str) -> str:
    return f"{endpoint}/{repo_id}/resolve/{commit}/{urllib.parse.quote(path)}"


def _repo_info(src: HubSource, settings: DownloadSettings) -> "tuple[str, object, str]":
    """(endpoint, model_info with file metadata, pinned commit) of ``src``; every failure mapped in http_errors."""
    endpoint = settings.hf_endpoint.rstrip("/")
    if settings.offline:
        raise OfflineError(f"{src.label}: offline mode is on (HF_HUB_OFFLINE); the hub cannot be asked for this repo")
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=settings.hf_token or False)
    try:
        info = api.model_info(src.repo_id, revision=src.revision, files_metadata=True, timeout=settings.connect_timeout + settings.read_timeout)
    except Exception as exc:  # noqa: BLE001 - every failure is mapped in http_errors
        raise http_errors.from_hf_exception(exc, repo_id=src.repo_id, endpoint=endpoint, revision=src.revision) from None
    return endpoint, info, info.sha or src.revision or "main"


def resolve_hub(src: HubSource, settings: DownloadSettings, precision: str = "fp16") -> Resolved:
    """The files of a hub repo (or a subfolder, or one file) to fetch, pinned to the commit sha.

    :param precision: ``"fp16"`` takes ``*.fp16.*`` variant weights where the repo has them.
    :raises AuthError: gated repo (names the license page) or bad token.
    :raises NotFoundError: no such repo, revision, subfolder or file.
    :raises OfflineError: offline mode is on.
    :raises DownloadError: the hub cannot be reached.
    """
    endpoint, info, commit = _repo_info(src, settings)
    sibs = {}
    for s in info.siblings or []:
        lfs = getattr(s, "lfs", None)
        sibs[s.rfilename] = _Sib(
            s.rfilename,
            int(s.size if s.size is not None else (lfs.size if lfs else -1)),
            getattr(lfs, "sha256", None) if lfs else None,
            getattr(s, "blob_id", None),
            lfs is not None,
        )

    def remote(sib: _Sib, base: str) -> RemoteFile:
        rel = safe_relpath(sib.path[len(base) :] if base else sib.path, src.label)
        return RemoteFile(
            _file_url(endpoint, src.repo_id, commit, sib.path), rel, sib.size, sib.sha256,
            git_oid=None if sib.lfs else sib.blob_id,
        )

    def done(chosen: list[_Sib], base: str, kind_hint: str | None, label: str) -> Resolved:
        files = tuple(remote(s, base) for s in sorted(chosen, key=lambda s: s.path))
        return Resolved(
            files=files, commit=commit, label=label, kind_hint=kind_hint,
            total_size=sum(max(0, f.size) for f in files), repo_id=src.repo_id,
        )

    if src.path_in_repo:
        sib = sibs.get(src.path_in_repo.strip("/"))
        if sib is None:
            raise NotFoundError(f"{src.repo_id}: no file {src.path_in_repo!r} at {commit[:12]}", "check the file name in the repo's Files tab")
        return done([sib], posixpath.dirname(sib.path) + "/" if "/" in sib.path else "", None, src.label)

    base = f"{src.subfolder.strip('/')}/" if src.subfolder else ""
    inside = {p[len(base) :]: s for p, s in sibs.items() if p.startswith(base)}
    if not inside:
        raise NotFoundError(f"{src.repo_id}: no subfolder {src.subfolder!r} at {commit[:12]}", "check the :subfolder part")

    if "model_index.json" in inside:
        raw = fetch_small(_file_url(endpoint, src.repo_id, commit, base + "model_index.json"), settings, what=f"{src.label} model_index.json")
        try:
            index = json.loads(raw)
        except ValueError:
            raise SourceError(f"{src.label}: model_index.json is not valid JSON") from None
        chosen = [inside["model_index.json"]]
        for comp in _components_of(index):
            files = [s for p, s in inside.items() if p.startswith(comp + "/")]
            chosen += _component(files, precision)
        return done(chosen, base, "main-diffusers", src.label)

    top = [s for p, s in inside.items() if "/" not in p]
    if any(posixpath.basename(s.path) == "config.json" for s in top) and any(_weight_info(posixpath.basename(s.path)) for s in top):
        # a single diffusers component (e.g. a VAE repo): config + one set of weights
        return done(_component(top, precision), base, None, src.label)

    models = [s for s in top if s.path.lower().endswith(_WEIGHT_SUFFIXES) and not _skipped(s.path)]
    if not models:
        models = [s for p, s in inside.items() if p.lower().endswith(_WEIGHT_SUFFIXES) and not _skipped(p)]
    if not models:
        raise NotFoundError(f"{src.label}: no model files found in the repo", "name a file: owner/name/blob/main/FILE, or a :subfolder")
    # the same model in two formats: keep the safetensors one
    stems = {}
    for s in sorted(models, key=lambda s: (not s.path.endswith(".safetensors"), s.path)):
        stems.setdefault(posixpath.splitext(s.path)[0], s)
    models = list(stems.values())
    if len(models) > 1:
        names = ", ".join(posixpath.basename(s.path) for s in models[:5])
        raise SourceError(
            f"{src.label} holds {len(models)} model files ({names}{', ...' if len(models) > 5 else ''}); which one?",
            f"give one file as {endpoint}/{src.repo_id}/blob/main/<file>",
        )
    single = models[0]
    return done([single], posixpath.dirname(single.path) + "/" if "/" in single.path else "", None, src.label)


def resolve_hub_files(src: HubSource, settings: DownloadSettings, select) -> Resolved:
    """Exactly the files ``select`` picks from a repo, pinned to its commit.

    ``select(paths)`` gets every file path in the repo and returns the ones to fetch (in any order);
    it raises :class:`NotFoundError` when a file it needs is missing.  Used for the support models
    (a few named files of a large repo).
    """
    endpoint, info, commit = _repo_info(src, settings)
    sibs = {}
    for s in info.siblings or []:
        sibs[s.rfilename] = s
    files = []
    for path in sorted(select(list(sibs))):
        s = sibs[path]
        lfs = getattr(s, "lfs", None)
        size = int(s.size if s.size is not None else (lfs.size if lfs else -1))
        files.append(RemoteFile(_file_url(endpoint, src.repo_id, commit, path), safe_relpath(path, src.label), size,
                                getattr(lfs, "sha256", None) if lfs else None,
                                git_oid=None if lfs else getattr(s, "blob_id", None)))
    return Resolved(files=tuple(files), commit=commit, label=src.label, kind_hint="support",
                    total_size=sum(max(0, f.size) for f in files), repo_id=src.repo_id)
