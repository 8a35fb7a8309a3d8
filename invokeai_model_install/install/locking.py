"""One installer per source: an inter-process file lock under ``models/.partial/locks``."""

from __future__ import annotations

import contextlib

from invokeai_model_install.install.identity import key_hash
from invokeai_model_install.install.item import ItemContext, Spec


@contextlib.contextmanager
def source_lock(ctx: ItemContext, spec: Spec):
    """An inter-process lock per source (file lock under ``models/.partial/locks``), cancellable while waiting."""
    from filelock import FileLock, Timeout

    folder = ctx.layout.partial_dir / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / f"{key_hash(spec.key)}.lock"))
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
