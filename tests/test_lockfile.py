"""Lock files: freeze root A, install from the file into root B byte for byte; a changed file is refused by name."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from invokeai_model_install.app import cli
from invokeai_model_install.app.configure import create_layout
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.install.plan_file import load_plan_file
from invokeai_model_install.install.worker import run_plan
from invokeai_model_install.root import manifest as mf
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.root.registry import Registry
from tests.sharefixtures import populate_root, publish


def tree(layout: RootLayout) -> dict[str, bytes]:
    """Every model file of a root (not the installer's own bookkeeping) -> its bytes."""
    out = {}
    for p in sorted(layout.models_dir.rglob("*")):
        rel = p.relative_to(layout.root).as_posix()
        if p.is_file() and not rel.startswith(("models/.partial", "models/.manifests", "models/.links")):
            out[rel] = p.read_bytes()
    return out


def freeze_to(layout: RootLayout, path: Path) -> dict:
    assert cli.main(["--root", str(layout.root), "freeze", "--output", str(path)]) == 0
    return yaml.safe_load(path.read_text())


def install(root_b: Path, lock: Path, *extra: str) -> int:
    if not RootLayout(root_b).exists():
        create_layout(RootLayout(root_b))  # what `invokeai-configure --skip-sd-weights` leaves on a new machine
    return cli.main(["--root", str(root_b), "--plan", str(lock), *extra])


@pytest.fixture
def root_a(tmp_path, hub_server, tiny_models, file_server, tiny_extras):
    """A root with two hub models (pipeline, VAE) and a LoRA from a URL."""
    layout = RootLayout(tmp_path / "a")
    create_layout(layout)
    publish(hub_server, tiny_models)
    shutil.copy(tiny_extras["lora-sd-1.safetensors"], file_server.folder / "style.safetensors")
    plan = InstallPlan(imports=("test/tiny-sd", "test/tiny-vae", file_server.url_for("style.safetensors")))
    assert run_plan(plan, layout).ok
    return layout


@pytest.fixture(autouse=True)
def thread_worker(monkeypatch):
    monkeypatch.setenv("INVOKEAI_INSTALL_WORKER", "thread")


def installed(layout) -> set[str]:
    """Installed models: a 2.3 root registers main models only; VAEs and LoRAs are known from their manifests."""
    return {m.name for m in mf.all_manifests(layout) if m.state == "installed"}


def test_freeze_then_install_reproduces_the_root_byte_for_byte(root_a, tmp_path, hub_server, capsys):
    lock = tmp_path / "models.lock.yaml"
    doc = freeze_to(root_a, lock)
    assert doc["lock_version"] == 1 and len(doc["locked"]) == 3
    sd = next(m for m in doc["locked"] if m["name"] == "tiny-sd")
    assert sd["origin"] == {"hub": "test/tiny-sd"} and sd["revision"] == hub_server.repos["test/tiny-sd"].revisions["main"]
    assert all(len(f["sha256"]) == 64 and f["size"] > 0 for m in doc["locked"] for f in m["files"])
    assert isinstance(load_plan_file(lock).locked[0].files[0].size, int)  # a lock file is a plan file

    root_b = RootLayout(tmp_path / "b")
    capsys.readouterr()
    assert install(root_b.root, lock, "--dry-run") == 0  # metadata only: the lock says what and how much
    dry = capsys.readouterr().out
    assert "tiny-sd (locked): main (diffusers), locked, from test/tiny-sd@" in dry and not list(mf.all_manifests(root_b))
    assert install(root_b.root, lock) == 0
    assert tree(root_b) == tree(root_a)
    assert Registry(root_b.models_yaml).load() == Registry(root_a.models_yaml).load()
    for m in mf.all_manifests(root_b):
        assert m.state == "installed" and mf.verify_manifest(root_b, m, full=True) == []
        assert m.key == mf.read_manifest(root_a, m.name).key  # re-runs of the original --add find it installed
    # again: nothing fetched, nothing changed
    capsys.readouterr()
    assert install(root_b.root, lock, "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert {o["status"] for o in out["items"]} == {"skipped"}, out


def test_a_file_changed_on_the_hub_under_the_same_revision_is_refused(root_a, tmp_path, hub_server, capsys):
    lock = tmp_path / "lock.yaml"
    freeze_to(root_a, lock)
    repo = hub_server.repos["test/tiny-sd"]
    files = repo.commits[repo.revisions["main"]]
    rel = "unet/diffusion_pytorch_model.safetensors"
    evil = tmp_path / "evil.safetensors"
    data = bytearray(files[rel].disk.read_bytes())
    data[-1] ^= 0xFF
    evil.write_bytes(bytes(data))
    files[rel] = dataclasses.replace(files[rel], disk=evil, sha256=hashlib.sha256(bytes(data)).hexdigest())
    root_b = RootLayout(tmp_path / "b")
    capsys.readouterr()
    hub_server.stats.reset()
    assert install(root_b.root, lock) == 1
    err = capsys.readouterr().err
    assert "tiny-sd" in err and rel in err and "changed on the server under the same revision" in err
    assert not root_b.kind_dir("main-diffusers").joinpath("tiny-sd").exists()
    assert "tiny-sd" not in Registry(root_b.models_yaml).load()
    assert {"tiny-vae", "style"} <= installed(root_b)  # the other models still install
    assert hub_server.stats.requests_for(f"*{rel}", "GET") == []  # refused before downloading a byte of it


def test_a_small_file_changed_on_the_hub_is_refused_after_download(root_a, tmp_path, hub_server, capsys):
    lock = tmp_path / "lock.yaml"
    freeze_to(root_a, lock)
    repo = hub_server.repos["test/tiny-vae"]
    files = repo.commits[repo.revisions["main"]]
    changed = tmp_path / "config.json"
    original = files["config.json"].disk.read_text()
    changed.write_text(original.replace("\"", "'", 1).replace("'", "\"", 1)[:-1] + " ")  # same size, other bytes
    assert changed.stat().st_size == files["config.json"].size and changed.read_bytes() != files["config.json"].disk.read_bytes()
    from tests.hubserver import _git_oid, _sha256_file

    files["config.json"] = dataclasses.replace(files["config.json"], disk=changed, sha256=_sha256_file(changed),
                                               git_oid=_git_oid(changed, changed.stat().st_size))
    root_b = RootLayout(tmp_path / "b")
    capsys.readouterr()
    assert install(root_b.root, lock) == 1
    err = capsys.readouterr().err
    assert "config.json" in err
    assert "tiny-vae" not in installed(root_b)


def test_offline_from_a_folder_of_files(tmp_path, hub_server, tiny_models, tiny_extras, tiny_checkpoints, capsys):
    root_a = populate_root(tmp_path / "a", hub_server, tiny_models, tiny_extras, tiny_checkpoints)
    lock = tmp_path / "lock.yaml"
    freeze_to(root_a, lock)
    hub_server.stop()  # no network from here on
    files = tmp_path / "usb"
    shutil.copytree(root_a.root, files / "whatever-layout")
    root_b = RootLayout(tmp_path / "b")
    capsys.readouterr()
    # the hub is down: every file comes from the folder (found by size and sha256, whatever its layout there)
    assert install(root_b.root, lock, "--lock-files", str(files)) == 0, capsys.readouterr().err
    # local files of root A were registered where they were (inside A); B holds them at the same root-relative paths
    assert tree(root_b) == tree(root_a)
    assert set(Registry(root_b.models_yaml).load()) == set(Registry(root_a.models_yaml).load())
    # a folder missing one file: refused, naming it
    victim = next((files / "whatever-layout").rglob("tiny-lora-sd-1.safetensors"))
    victim.unlink()
    root_c = RootLayout(tmp_path / "c")
    capsys.readouterr()
    assert install(root_c.root, lock, "--lock-files", str(files)) == 1
    assert "tiny-lora-sd-1.safetensors" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["one machine", "two machines"])
def test_two_processes_installing_one_lock_into_one_shared_root(root_a, tmp_path, hub_server, where):
    """Two installers at once on one root; "two machines": the second as if on another machine (its own host
    name and process ids: tests can share a disk between machines no other way here)."""
    prefix: list[str] = []
    if where == "two machines":
        prefix = other_machine("machine-b")
    lock = tmp_path / "lock.yaml"
    freeze_to(root_a, lock)
    shared = tmp_path / "shared"
    env = {**os.environ, "HF_ENDPOINT": hub_server.url, "INVOKEAI_INSTALL_WORKER": "thread"}
    cmd = [sys.executable, "-m", "invokeai_model_install", "--root", str(shared), "--yes", "--plan", str(lock), "--json"]
    # --yes: the first one to run creates the root; both then install the same three models at once
    create_layout(RootLayout(shared))
    cmd.remove("--yes")
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=Path(__file__).parent.parent)
             for argv in (cmd, prefix + cmd)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1].decode()[-2000:] for o in outs]
    statuses = sorted(o["status"] for out, _ in outs for o in json.loads(out)["items"])
    assert statuses.count("installed") == 3 and statuses.count("skipped") == 3  # each model fetched once
    layout = RootLayout(shared)
    assert tree(layout) == tree(root_a)
    assert installed(layout) == {"tiny-sd", "tiny-vae", "style"}
    assert set(Registry(layout.models_yaml).load()) == {"tiny-sd"}  # a 2.3 root lists only main models


def test_files_kept_for_other_uis_are_locked_too(tmp_path, file_server, capsys):
    """An upscaler has a manifest and no stanza: freeze keeps it, and the lock reproduces it (still no stanza)."""
    from tests.test_probe_families import rrdbnet, write

    root_a = RootLayout(tmp_path / "a")
    create_layout(root_a)
    write(file_server.folder / "RealESRGAN_x4plus.pth", {"params_ema": rrdbnet()}, "pt")
    assert run_plan(InstallPlan(imports=(file_server.url_for("RealESRGAN_x4plus.pth"),)), root_a).ok
    lock = tmp_path / "lock.yaml"
    doc = freeze_to(root_a, lock)
    (entry,) = doc["locked"]
    assert (entry["kind"], entry["stanza"], entry["path"]) == ("upscaler", {}, "models/upscale_models/RealESRGAN_x4plus.pth")
    root_b = RootLayout(tmp_path / "b")
    assert install(root_b.root, lock) == 0
    assert tree(root_b) == tree(root_a) and Registry(root_b.models_yaml).load() == {}
    assert mf.read_manifest(root_b, "RealESRGAN_x4plus").state == "installed"
    capsys.readouterr()
    assert install(root_b.root, lock, "--json") == 0
    assert [o["status"] for o in json.loads(capsys.readouterr().out)["items"]] == ["skipped"]


# --- one root shared by several machines: name reservations ---------------------------------------------
# Choosing a model's name and path is reserved in models/.partial/locks/reserved until its manifest exists.
# A reservation names its owner's machine: another machine's process ids mean nothing here.


def _dead_pid() -> int:
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1 if Path("/proc/sys/kernel/pid_max").exists() else 2**31 - 2


def _ctx(layout: RootLayout):
    from invokeai_model_install.install.item import ItemContext

    return ItemContext(layout=layout, plan=InstallPlan(), settings=None, emit=lambda e: None)


def _reserved(layout: RootLayout) -> dict[str, str]:
    folder = layout.partial_dir / "locks" / "reserved"
    return {d["name"]: d["owner"] for d in (json.loads(f.read_text()) for f in folder.glob("*.json"))} if folder.is_dir() else {}


def test_a_reservation_made_on_another_machine_holds_whatever_its_process_id(tmp_path):
    from invokeai_model_install.install import placement

    layout = RootLayout(tmp_path / "shared")
    create_layout(layout)
    folder = layout.partial_dir / "locks" / "reserved"
    folder.mkdir(parents=True)
    theirs = folder / "theirs.json"
    # machine B is placing "model": its process id does not exist on this machine
    theirs.write_text(json.dumps({"name": "model", "dest": None, "owner": f"{_dead_pid()}-1@machine-b"}))
    assert placement.free_name(_ctx(layout), "model") == "model-2"
    assert theirs.exists()
    assert _reserved(layout)["model-2"].endswith("@" + placement._host())  # ours names this machine
    placement.release_reservations(layout)
    assert _reserved(layout) == {"model": f"{_dead_pid()}-1@machine-b"}
    # an installer that died on machine B: its reservation is let go once it is old
    old = os.path.getmtime(theirs) - placement.FOREIGN_RESERVATION_S - 60
    os.utime(theirs, (old, old))
    assert placement.free_name(_ctx(layout), "model") == "model" and not theirs.exists()
    placement.release_reservations(layout)
    # a reservation from before owners named their machine is this machine's: a dead process's is let go
    theirs.write_text(json.dumps({"name": "model", "dest": None, "owner": f"{_dead_pid()}-1"}))
    assert placement.free_name(_ctx(layout), "model") == "model" and not theirs.exists()


_MACHINE_SCRIPT = """
import sys
from invokeai_model_install.install import placement
from invokeai_model_install.install.item import ItemContext
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.root.layout import RootLayout

from pathlib import Path
layout = RootLayout(Path(sys.argv[1]))
print(placement.free_name(ItemContext(layout=layout, plan=InstallPlan(), settings=None, emit=lambda e: None), "model"), flush=True)
sys.stdin.readline()  # holds its reservation (it would be placing the files now) until told to finish
placement.release_reservations(layout)
"""


def _other_machine_prefix(hostname: str) -> list[str] | str:
    """argv prefix running a command as on another machine: its own host name and process ids (UTS and PID
    namespaces); or why that cannot be done here."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return "needs root and unshare (util-linux) to give a process its own host name and process ids"
    prefix = ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "sh", "-c", 'hostname "$0" && exec "$@"', hostname]
    done = subprocess.run(prefix + ["sh", "-c", "echo $$ $(hostname)"], capture_output=True, text=True)
    if done.returncode != 0 or done.stdout.split() != ["1", hostname]:
        return f"unshare cannot make a UTS and PID namespace here: {(done.stderr or done.stdout).strip()}"
    return prefix


def other_machine(hostname: str) -> list[str]:
    """:func:`_other_machine_prefix`, or skip saying why (FAIL with ``CI`` set: ``.ci/run`` runs as root)."""
    found = _other_machine_prefix(hostname)
    if isinstance(found, str):
        if os.environ.get("CI"):
            pytest.fail(f"{found}; .ci/run runs as root: CI must test this", pytrace=False)
        pytest.skip(found)
    return found


def test_two_machines_placing_models_into_one_shared_root_never_take_the_same_name(tmp_path):
    """Two installers on one shared root, one of them as if on another machine (own host name, own process
    ids), choose a name for a model of the same base name at the same time: each keeps its own."""
    prefix = other_machine("machine-b")
    layout = RootLayout(tmp_path / "shared")
    create_layout(layout)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    argv = [sys.executable, "-c", _MACHINE_SCRIPT, str(layout.root)]
    here = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    there = None
    try:
        name_here = here.stdout.readline().strip()
        assert name_here == "model"
        there = subprocess.Popen(prefix + argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        name_there = there.stdout.readline().strip()
        assert name_there == "model-2"  # "model" is still being placed on this machine
        owners = _reserved(layout)
        assert owners["model"].endswith(f"@{os.uname().nodename}") and owners["model-2"].endswith("@machine-b")
    finally:
        for p in (here, there):
            if p is not None:
                p.communicate("\n", timeout=60)
    assert (here.returncode, there.returncode) == (0, 0)
    assert _reserved(layout) == {}
