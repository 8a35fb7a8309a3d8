"""The worker machinery: events, outcomes, independence of items, thread and process modes, cancel, a dead worker.

The full pipeline against the loopback servers is in tests/test_end_to_end.py; these
tests use plans that need no network (removals, unknown names) so that they pin the
machinery itself.
"""

import os
import pickle
import signal
import time

import pytest
import yaml

from invokeai_model_install import events as ev
from invokeai_model_install.errors import UnknownModelError
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.root.registry import Registry
from invokeai_model_install.install.item import ItemOutcome
from invokeai_model_install.install.run import InstallResult, build_items, run_plan
from invokeai_model_install.install.worker import start_install

CATALOG = """
tiny-sd:
  description: Tiny SD (1 MB)
  repo_id: test/tiny-sd
  format: diffusers
  recommended: true
  default: true
  size: 1000000
"""


@pytest.fixture
def root(tmp_path):
    layout = RootLayout(tmp_path / "root")
    ckpt = layout.kind_dir("main") / "a.safetensors"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x" * 10)
    with Registry(layout.models_yaml).transaction() as doc:
        doc.add("a", {"description": "A", "weights": "models/checkpoints/a.safetensors", "format": "ckpt",
                      "config": "configs/stable-diffusion/v1-inference.yaml"})
        doc.add("b", {"description": "B", "path": "/elsewhere/b", "format": "diffusers"})
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    return layout, catalog


def test_items_are_independent_and_reported(root):
    layout, catalog = root
    plan = InstallPlan(remove_starters=("a", "missing"), purge=True, install_starters=("no-such-starter",))
    seen = []
    result = run_plan(plan, layout, catalog_path=catalog, on_event=seen.append)
    by_label = {o.label: o for o in result.outcomes}
    assert by_label["remove a"].status == "removed"
    assert by_label["remove missing"].status == "skipped"
    bad = by_label["no-such-starter"]
    assert bad.status == "failed" and bad.error == "UnknownModelError" and "no-such-starter" in bad.message and bad.hint
    assert not result.ok and result.count("failed") == 1
    # effects: a left models.yaml, its file was purged (inside models/), b untouched
    assert Registry(layout.models_yaml).names() == ["b"]
    assert not (layout.kind_dir("main") / "a.safetensors").exists()
    # events: PlanStarted first, PlanFinished last, every other event carries its item id
    assert isinstance(seen[0], ev.PlanStarted) and isinstance(seen[-1], ev.PlanFinished)
    assert seen[-1].succeeded == 1 and seen[-1].skipped == 1 and seen[-1].failed == 1
    assert all(e.item for e in seen[1:-1] if not isinstance(e, ev.ItemNote))
    removed = [e for e in seen if isinstance(e, ev.ItemRemoved)]
    assert removed[0].name == "a" and removed[0].purged == ("models/checkpoints/a.safetensors",)
    failed = [e for e in seen if isinstance(e, ev.ItemFailed)]
    assert len(failed) == 1 and failed[0].error == "UnknownModelError"


def test_removal_without_purge_keeps_files(root):
    layout, catalog = root
    result = run_plan(InstallPlan(remove_starters=("a",)), layout)
    assert result.ok and Registry(layout.models_yaml).names() == ["b"]
    assert (layout.kind_dir("main") / "a.safetensors").exists()


def test_build_items_order(root):
    layout, catalog = root
    items = build_items(InstallPlan(remove_starters=("a",), install_starters=("tiny-sd",)), layout, catalog)
    assert [(i.action, i.label) for i in items] == [("remove", "remove a"), ("install", "tiny-sd")]
    assert items[1].starter.repo_id == "test/tiny-sd"


def test_cancel_before_start_reports_every_item(root):
    import threading

    layout, catalog = root
    cancel = threading.Event()
    cancel.set()
    result = run_plan(InstallPlan(remove_starters=("a", "b")), layout, cancel=cancel)
    assert result.cancelled and not result.ok
    assert [o.error for o in result.outcomes] == ["Cancelled", "Cancelled"]
    assert Registry(layout.models_yaml).names() == ["a", "b"]  # nothing done


def test_autoscan_writes_and_removes_init_option(root, tmp_path):
    layout, _ = root
    layout.init_file.write_text("--outdir=/x\n--autoconvert /old\n# keep me\n")
    scan = tmp_path / "scan"
    scan.mkdir()
    notes = []
    run_plan(InstallPlan(scan_dir=scan, autoscan=True), layout, on_event=notes.append)
    assert layout.init_file.read_text() == f'--outdir=/x\n--autoconvert "{scan}"\n# keep me\n'
    assert any(isinstance(e, ev.ItemNote) and "startup" in e.message for e in notes)
    run_plan(InstallPlan(autoscan=False), layout)
    assert layout.init_file.read_text() == "--outdir=/x\n# keep me\n"


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_background_modes(root, mode):
    layout, catalog = root
    handle = start_install(InstallPlan(remove_starters=("a",), install_starters=("nope",)), layout, catalog_path=catalog, mode=mode)
    got = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        e = handle.poll(0.05)
        if e is not None:
            got.append(e)
            if isinstance(e, ev.PlanFinished):
                break
    assert isinstance(got[0], ev.PlanStarted) and isinstance(got[-1], ev.PlanFinished)
    result = handle.join(30)
    assert handle.done and handle.poll(0) is None
    assert [o.status for o in result.outcomes] == ["removed", "failed"]
    if mode == "process":
        assert handle.pid and handle.pid != os.getpid()
        assert handle._runner.exitcode == 0  # the process ended: its memory went with it
    assert Registry(layout.models_yaml).names() == ["b"]


def test_killed_process_gives_an_abnormal_result(root):
    layout, catalog = root
    handle = start_install(InstallPlan(remove_starters=("a",)), layout, mode="process")
    os.kill(handle.pid, signal.SIGKILL)
    result = handle.join(60)
    assert result.error and "exit code" in result.error and not result.ok
    # the front end still gets an end marker
    tail = []
    while (e := handle.poll(0)) is not None:
        tail.append(e)
    assert tail and isinstance(tail[-1], ev.PlanFinished)
    yaml.safe_load(layout.models_yaml.read_text())  # whatever happened, models.yaml is valid


def test_results_and_events_pickle():
    r = InstallResult((ItemOutcome("item1", "x", "failed", message="m", hint="h", error="E"),), 5, False)
    assert pickle.loads(pickle.dumps(r)) == r and r.to_json()["items"][0]["hint"] == "h" and not r.ok
    q = ev.QuestionAsked(item="item1", qid="q", kind="prediction_type", prompt="?", choices=("epsilon", "v", "skip"))
    assert pickle.loads(pickle.dumps(q)) == q
    err = pickle.loads(pickle.dumps(UnknownModelError("m", "h")))
    assert err.one_line() == "m (h)"


def test_worker_process_ignores_ctrl_c_and_cancels(root, hub_server, tiny_models):
    """SIGINT (Ctrl-C hits the whole process group) does not kill the worker; cancel() stops it cleanly."""
    layout, _ = root
    hub_server.add_repo("test/slow", tiny_models["sd-1"])
    hub_server.faults.throttle("/test/slow/*", 2_000_000)
    handle = start_install(InstallPlan(imports=("test/slow",)), layout, mode="process")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        e = handle.poll(0.05)
        if isinstance(e, ev.FileProgress):
            break
    os.kill(handle.pid, signal.SIGINT)
    time.sleep(0.5)
    assert handle._runner.is_alive()
    handle.cancel()
    result = handle.join(120)
    assert result.cancelled and not result.error and handle._runner.exitcode == 0
    assert "slow" not in Registry(layout.models_yaml).names()


def test_a_plan_that_cannot_start_is_one_failure(root, tmp_path):
    layout, _ = root
    bad = tmp_path / "bad-catalog.yaml"
    bad.write_text("x: [unclosed\n")
    seen = []
    result = run_plan(InstallPlan(install_starters=("x",)), layout, catalog_path=bad, on_event=seen.append)
    assert not result.ok and result.outcomes[0].error == "ConfigError" and "bad-catalog.yaml" in result.outcomes[0].message
    assert isinstance(seen[0], ev.PlanStarted) and isinstance(seen[-1], ev.PlanFinished) and seen[-1].failed == 1
