"""Removing a model: its stanza out of models.yaml, and with ``--purge`` its files inside ``models/``."""

from __future__ import annotations

from invokeai_model_install.errors import UnknownModelError
from invokeai_model_install.events import ItemRemoved
from invokeai_model_install.install.item import ItemContext, ItemOutcome, WorkItem
from invokeai_model_install.root import manifest as mf


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
        record = mf.read_manifest(ctx.layout, name)
        if record is None:
            raise NotInstalled(f"{name} is not installed")
        if not ctx.plan.purge:
            if not record.stanza:
                raise NotInstalled(f"{name} has no models.yaml stanza (a {record.kind} in {record.path}); "
                                   "--purge deletes its files")
            raise NotInstalled(f"{name} is not installed")
        record = mf.read_manifest(ctx.layout, name)
        assert record is not None
        # a model without a stanza (VAE, LoRA, embedding ... in a 2.3 root): its files are where the manifest says
        removed, remaining = (dict(record.stanza) or {"path": record.path}), ctx.registry.load()
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


class NotInstalled(UnknownModelError):
    """Removal of a name that is not in models.yaml: reported as skipped, not failed."""
