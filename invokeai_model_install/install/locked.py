"""Plan items of a lock file (``--plan LOCK`` with a ``locked`` list): the worker's side of
:mod:`invokeai_model_install.share.lockfile`, which does the work.  Same events, same outcome values,
same per-item failure reporting as any install."""

from __future__ import annotations

from typing import Any

from invokeai_model_install.events import ItemRegistered, ItemVerified
from invokeai_model_install.install.item import ItemContext, ItemOutcome, WorkItem
from invokeai_model_install.install.pipeline import default_settings
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.root.layout import RootLayout

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
    settings = None if files_from is not None else default_settings(ctx.settings)
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


def plan_locked(item: WorkItem, plan: InstallPlan, layout: RootLayout) -> Any:
    """The dry-run line of a locked model (no network: the lock file says what and how much)."""
    from invokeai_model_install.install.dry_run import PlannedItem
    from invokeai_model_install.share import lockfile

    model = item.source
    done = lockfile.installed_already(layout, model)
    origin = model.origin
    where = (f"{origin['hub']}@{(model.revision or '')[:12]}" if "hub" in origin else origin.get("url") or "local files")
    if plan.lock_files is not None:
        where = f"files in {plan.lock_files}"
    return PlannedItem(item.id, item.label, "install", what=f"{model.kind} ({model.format}), locked, from {where}",
                       destination=model.path, bytes_to_fetch=0 if done else model.total_size, total_bytes=model.total_size,
                       status="already installed" if done else "")
