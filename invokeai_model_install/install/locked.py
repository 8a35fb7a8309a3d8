"""Plan items of a lock file (``--plan LOCK`` with a ``locked`` list): the worker's side of
:mod:`invokeai_model_install.share.lockfile`, which does the work.  Same events, same outcome values,
same per-item failure reporting as any install.  (The dry-run line is in :mod:`.dry_run`.)"""

from __future__ import annotations

from typing import Any

from invokeai_model_install.events import ItemRegistered, ItemVerified
from invokeai_model_install.install.item import ItemContext, ItemOutcome, WorkItem

_INDEXES: dict[str, Any] = {}  # lock_files folder -> FileIndex, shared by the items of one run


def install_locked_item(item: WorkItem, ctx: ItemContext) -> ItemOutcome:
    from invokeai_model_install.share import lockfile

    model = item.source
    files_from = ctx.plan.lock_files
    index = None
    if files_from is not None:
        key = f"{files_from}#{id(ctx.plan)}"  # one index per run (every staged copy is verified again anyway)
        index = _INDEXES.get(key)
        if index is None:
            ctx.stage("scan", f"indexing {files_from}")
            index = _INDEXES[key] = lockfile.FileIndex(files_from)
    settings = None
    if files_from is None:  # the network: the run's settings, or the environment's
        from invokeai_model_install.net.settings import DownloadSettings

        settings = ctx.settings if ctx.settings is not None else DownloadSettings.from_env()
    before = ctx.fetched
    result = lockfile.install_locked(
        model, ctx.layout, settings=settings, files_from=files_from, index=index, on_event=ctx.emit,
        stage=lambda stage, detail: ctx.stage(stage, detail), cancel=ctx.cancel,
    )
    ctx.fetched += result.fetched_bytes
    if result.status == "installed":
        ctx.emit(ItemVerified(files=len(model.files), bytes=model.total_size))
        ctx.emit(ItemRegistered(name=model.name, path=model.path))
    return ItemOutcome(item=item.id, label=item.label, status=result.status, name=model.name, message=result.message,
                       path=model.path, fetched_bytes=ctx.fetched - before)
