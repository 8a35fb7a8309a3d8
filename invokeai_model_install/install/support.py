"""The support models InvokeAI 2.3.5 needs to load checkpoint (``format: ckpt``) models.

2.3.5 converts a single-file model in memory when it loads it (``ckpt_to_diffuser.py``), and takes the
pieces a checkpoint does not carry from three hub repos in its HuggingFace cache (``ROOT/models/hub``):
the CLIP tokenizer and text-encoder config (SD-1), the safety checker (SD-1), the SD-2 tokenizer and text
encoder.  Offline, every ``format: ckpt`` stanza fails without them.  Its own ``invokeai-configure``
downloads them; so does ours (``--skip-support-models`` skips them).

Only the files 2.3.5 reads are fetched (about 4.3 GB instead of the repos' 20+ GB): configs, tokenizers
and ONE weights file per model, ``model.safetensors`` before ``pytorch_model.bin`` (never TF/Flax).  They
go through the same download engine as every model (sizes and sha256 from the hub, verified, resumable)
and are laid out the way huggingface_hub 0.14 reads them offline:
``models/hub/models--org--name/snapshots/<commit>/<file>`` plus ``refs/main`` = that commit (required:
without it the offline load fails).  A manifest per repo (kind ``support``) makes re-runs no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from invokeai_model_install.errors import NotFoundError
from invokeai_model_install.events import ItemRegistered, ItemVerified
from invokeai_model_install.install.identity import staging_dir
from invokeai_model_install.install.item import ItemContext, ItemOutcome, WorkItem
from invokeai_model_install.root import manifest as mf
from invokeai_model_install.root.layout import RootLayout


@dataclass(frozen=True)
class SupportRepo:
    """One support repo: the files 2.3.5 reads from it (``weights``: alternatives, the first present wins)."""

    repo_id: str
    why: str
    files: tuple[str, ...]
    weights: tuple[tuple[str, ...], ...]
    optional: tuple[str, ...] = ()
    size: int = 0  # bytes, for planning (the real repo's selection)

    @property
    def label(self) -> str:
        return f"support model {self.repo_id}"

    @property
    def key(self) -> str:
        return f"support:{self.repo_id}"

    @property
    def manifest_name(self) -> str:
        return "support--" + self.repo_id.replace("/", "--")

    def select(self, available: list[str]) -> list[str]:
        have = set(available)
        missing = [f for f in self.files if f not in have]
        chosen = [f for f in self.files if f in have] + [f for f in self.optional if f in have]
        for alternatives in self.weights:
            found = next((w for w in alternatives if w in have), None)
            if found is None:
                missing.append(" or ".join(alternatives))
            else:
                chosen.append(found)
        if missing:
            raise NotFoundError(f"{self.repo_id}: the repo lacks {', '.join(missing)}, which InvokeAI 2.3.5 reads",
                                "check HF_ENDPOINT (a mirror must carry the whole repo)")
        return chosen

    def complete_in(self, snapshot: Path) -> bool:
        """True when ``snapshot`` holds every file 2.3.5 reads."""
        return all((snapshot / f).is_file() for f in self.files) and all(
            any((snapshot / w).is_file() for w in alternatives) for alternatives in self.weights)


_CLIP_TOKENIZER = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")

#: What 2.3.5 reads (ckpt_to_diffuser.py ~845-860, ~973-977, ~1264-1306; invokeai_configure.py ~194-206, ~268-284).
SUPPORT_MODELS: tuple[SupportRepo, ...] = (
    SupportRepo("openai/clip-vit-large-patch14", "text encoder config and tokenizer of SD-1 checkpoints",
                files=("config.json", *_CLIP_TOKENIZER), optional=("tokenizer.json",),
                weights=(("model.safetensors", "pytorch_model.bin"),), size=1_710_000_000),
    SupportRepo("CompVis/stable-diffusion-safety-checker", "safety checker of SD-1 checkpoints",
                files=("config.json", "preprocessor_config.json"),
                weights=(("model.safetensors", "pytorch_model.bin"),), size=1_220_000_000),
    SupportRepo("stabilityai/stable-diffusion-2", "text encoder and tokenizer of SD-2 checkpoints",
                files=("text_encoder/config.json", *(f"tokenizer/{f}" for f in _CLIP_TOKENIZER)),
                weights=(("text_encoder/model.safetensors", "text_encoder/pytorch_model.bin"),), size=1_360_000_000),
)


def cached_snapshot(layout: RootLayout, repo_id: str) -> Path | None:
    """The snapshot ``refs/main`` points at in the root's HF cache, when both exist."""
    ref = layout.hf_repo_dir(repo_id) / "refs" / "main"
    try:
        commit = ref.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    snap = layout.hf_repo_dir(repo_id) / "snapshots" / commit
    return snap if commit and snap.is_dir() else None


def missing_support_models(layout: RootLayout) -> list[SupportRepo]:
    """The support repos not (completely) in the root's HF cache."""
    out = []
    for repo in SUPPORT_MODELS:
        snap = cached_snapshot(layout, repo.repo_id)
        if snap is None or not repo.complete_in(snap):
            out.append(repo)
    return out


def install_support_item(item: WorkItem, ctx: ItemContext) -> ItemOutcome:
    """Download one support repo's files into ``models/hub`` (nothing when they are there)."""
    from invokeai_model_install.install.examine import check_safety
    from invokeai_model_install.install.pipeline import _download, default_settings, write_hf_ref
    from invokeai_model_install.net import hub, sources

    repo: SupportRepo = item.source
    layout = ctx.layout
    where = layout.relative(layout.hf_repo_dir(repo.repo_id))

    def outcome(status: str, message: str, path: str = where) -> ItemOutcome:
        return ItemOutcome(item=item.id, label=item.label, status=status, name=repo.manifest_name, message=message, path=path,
                           fetched_bytes=ctx.fetched)

    for m in mf.find_by_key(layout, repo.key):
        if not mf.verify_manifest(layout, m, cancel=ctx.cancel) and cached_snapshot(layout, repo.repo_id) is not None:
            return outcome("skipped", f"already installed in {m.path}", m.path)
    snap = cached_snapshot(layout, repo.repo_id)
    if snap is not None and repo.complete_in(snap):
        return outcome("skipped", f"already in {layout.relative(snap)}", layout.relative(snap))

    ctx.stage("resolve", repo.repo_id)
    ctx.settings = default_settings(ctx.settings)
    resolved = hub.resolve_hub_files(sources.HubSource(repo_id=repo.repo_id), ctx.settings, repo.select)
    staged = staging_dir(layout, repo.key)
    sha_by_rel = _download(resolved, staged, ctx)
    ctx.stage("verify")
    ctx.emit(ItemVerified(files=len(resolved.files), bytes=sum(max(0, f.size) for f in resolved.files)))
    check_safety(staged, ctx, repo.label, delete_on_danger=True)  # pytorch_model.bin is a pickle

    ctx.stage("place")
    commit = resolved.commit or "main"
    dest = layout.hf_repo_dir(repo.repo_id) / "snapshots" / commit
    rels = [f.relpath for f in resolved.files]
    files = tuple(mf.FileRecord(layout.relative(dest / rel), (staged / rel).stat().st_size, sha_by_rel.get(rel, ""), 0) for rel in rels)
    m = mf.Manifest(name=repo.manifest_name, key=repo.key, source=repo.repo_id, kind="support", format="hf-cache",
                    path=layout.relative(dest), files=files, revision=commit, state="placed", stanza={})
    mf.write_manifest(layout, m)
    for rel in rels:  # file by file: whatever else the snapshot holds (2.3.5's own downloads) stays
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        os.replace(staged / rel, target)
    import shutil

    shutil.rmtree(staged, ignore_errors=True)
    write_hf_ref(layout, repo.repo_id, commit)
    from invokeai_model_install.install.placement import refresh_mtimes

    m = refresh_mtimes(layout, m)
    import dataclasses

    mf.write_manifest(layout, dataclasses.replace(m, state="installed"))
    ctx.emit(ItemRegistered(name=repo.manifest_name, path=layout.relative(dest)))  # the front ends' end of an item
    return outcome("installed", f"in {layout.relative(dest)} ({repo.why})", layout.relative(dest))
