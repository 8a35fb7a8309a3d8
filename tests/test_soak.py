"""Soak test (issue 11): random faults over many rounds, then repeated SIGKILLs of a real installer.

Bounded to about two minutes on the shared 2-core machine: the number of rounds and kills is fixed
(never a time budget: tests assert behaviour, not timings), the seed is fixed (set SOAK_SEED to try
others), and the files are small (LoRAs of ~0.2 MB and VAEs of ~5.6 MB split into 1 MB ranges).

What must hold, after every round and after every kill:

* no corrupt file is accepted: every registered model's file has the sha256 of the file served;
* ``models.yaml`` always parses, and nothing registered before is ever lost;
* a failed item leaves no stanza; a final clean run installs everything that had failed.

The figures of a run (faults injected, retries seen, kills, what was installed) are printed at the end
(``pytest -s``) and recorded in docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from invokeai_model_install import events as ev
from invokeai_model_install.app.configure import create_layout
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.install.run import run_plan
from invokeai_model_install.net.settings import DownloadSettings
from invokeai_model_install.root import manifest as mf
from invokeai_model_install.root.layout import RootLayout
from tests.modelgen import make_lora_file, make_vae_file

SEED = int(os.environ.get("SOAK_SEED", "20261205"))
ROUNDS = 50  # fault rounds
FILES_PER_ROUND = 3
KILLS = 20  # SIGKILLs of a real installer process


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def registered(layout: RootLayout) -> dict[str, dict]:
    """models.yaml as InvokeAI reads it: it must always parse."""
    text = layout.models_yaml.read_text() if layout.models_yaml.exists() else ""
    doc = yaml.safe_load(text) or {}
    assert isinstance(doc, dict), text
    return {k: v for k, v in doc.items() if isinstance(v, dict)}


def check_registry(layout: RootLayout, served: dict[str, str], before: set[str]) -> dict[str, dict]:
    """models.yaml parses, nothing installed before is lost, and every installed file is the file served.

    Installed models are the models.yaml stanzas (main models) plus the kinds InvokeAI 2.3.5 reads from its
    folders without a stanza (VAE, LoRA, ...), which only their manifests record.  A file rewritten for 2.3.5
    (VAE attention names) keeps the served file's hash as ``source_sha256``.
    """
    stanzas = registered(layout)
    for name, stanza in stanzas.items():
        where = stanza.get("path") or stanza.get("weights")
        if not where:
            continue
        path = layout.absolute(where)
        assert path.is_file(), f"{name}: {path} is missing"
        digest = sha256_of(path)
        assert digest in served.values(), f"{name}: {path} is not any file the server sent (corrupt file accepted)"
    installed = dict(stanzas)
    for manifest in mf.unregistered(layout):
        for record in manifest.files:
            path = layout.absolute(record.path)
            assert path.is_file(), f"{manifest.name}: {path} is missing"
            digest = sha256_of(path)
            if record.source_sha256:
                assert digest == record.sha256 and record.source_sha256 in served.values(), \
                    f"{manifest.name}: {path} is not the served file rewritten (corrupt file accepted)"
            else:
                assert digest in served.values(), f"{manifest.name}: {path} is not any file the server sent"
        installed[manifest.name] = {"path": manifest.path}
    lost = before - set(installed)
    assert not lost, f"lost: {sorted(lost)}"
    return installed


def make_files(folder: Path, rng: random.Random, n_rounds: int) -> list[list[tuple[str, str]]]:
    """Per round: (file name, sha256) of FILES_PER_ROUND distinct small model files."""
    rounds = []
    for r in range(n_rounds):
        files = []
        for i in range(FILES_PER_ROUND):
            seed = 1000 + r * FILES_PER_ROUND + i
            if i == 0 and r % 3 == 0:  # every third round a VAE, big enough for ranged downloads
                path = make_vae_file(folder / f"vae-r{r}.safetensors", seed=seed)
            else:
                path = make_lora_file(folder / f"lora-r{r}-{i}.safetensors", seed=seed)
            files.append((path.name, sha256_of(path)))
        rounds.append(files)
    return rounds


FAULT_KINDS = ("drop", "stall", "status", "corrupt", "ignore_range", "html", "reset")


def inject(server, rng: random.Random, name: str, size: int, counts: Counter) -> None:
    """0-2 random faults on one file (most are transient: a retry or a resume gets past them)."""
    glob = "/" + name
    for _ in range(rng.choice((0, 1, 1, 2))):
        kind = rng.choice(FAULT_KINDS)
        counts[kind] += 1
        if kind == "drop":
            server.faults.drop(glob, after_bytes=rng.randrange(1, max(2, size)), times=rng.choice((1, 2)))
        elif kind == "reset":
            server.faults.drop(glob, after_bytes=0, times=1)
        elif kind == "stall":
            server.faults.stall(glob, seconds=rng.choice((0.3, 1.5)), after_bytes=rng.randrange(0, max(1, size // 2)), times=1)
        elif kind == "status":
            server.faults.status(glob, rng.choice((500, 502, 503, 429)), times=rng.choice((1, 2)), retry_after=0)
        elif kind == "corrupt":
            server.faults.corrupt(glob, times=rng.choice((1, None)))
        elif kind == "ignore_range":
            server.faults.ignore_range(glob, times=rng.choice((1, None)))
        elif kind == "html":
            server.faults.html(glob, times=1)


def _partials(layout: RootLayout, since: float) -> list[Path]:
    """Partial downloads this run opened (small files are written at the end of their transfer: a .part may
    be empty; one from an earlier killed run counts once this run touches it)."""
    out = []
    for p in layout.partial_dir.rglob("*.part"):
        try:
            if p.stat().st_mtime >= since or p.stat().st_ctime >= since:
                out.append(p)
        except OSError:  # finished and renamed while we looked
            pass
    return out


@pytest.fixture
def layout(tmp_path: Path) -> RootLayout:
    layout = RootLayout(tmp_path / "invokeai")
    create_layout(layout)
    return layout


def test_soak_random_faults_then_sigkills(layout, file_server, tmp_path, capsys):
    rng = random.Random(SEED)
    rounds = make_files(file_server.folder, rng, ROUNDS)
    kill_files = []  # served to the killed installers: two new files per kill, slowed down below
    for k in range(2 * KILLS):
        path = make_lora_file(file_server.folder / f"kill-{k}.safetensors", seed=5000 + k)
        kill_files.append((path.name, sha256_of(path)))
    served = {name: digest for files in rounds + [kill_files] for name, digest in files}
    settings = DownloadSettings(
        retries=4, backoff=0.02, backoff_max=0.1, connect_timeout=2.0, read_timeout=1.0,
        split_size=1 << 20, max_connections=4,
    )
    faults: Counter = Counter()
    retries = 0
    outcomes: Counter = Counter()
    failed_lines: list[str] = []
    known: set[str] = set()

    # --- part 1: random faults, one plan per round, in this process ----------------------------------
    for files in rounds:
        file_server.faults.clear()
        lines = []
        for name, digest in files:
            size = (file_server.folder / name).stat().st_size
            inject(file_server, rng, name, size, faults)
            url = file_server.url_for(name)
            lines.append(f"{url}#sha256={digest}" if rng.random() < 0.7 else url)  # some without a reference hash
        seen: list[ev.Event] = []
        result = run_plan(InstallPlan(imports=tuple(lines)), layout, settings=settings, on_event=seen.append)
        retries += sum(isinstance(e, ev.Retrying) for e in seen)
        assert len(result.outcomes) == len(lines)  # one item per line, in order
        for line, outcome in zip(lines, result.outcomes):
            outcomes[outcome.status] += 1
            if outcome.status == "failed":
                failed_lines.append(line)
        stanzas = check_registry(layout, served, known)
        for outcome in result.outcomes:
            if outcome.status == "failed":  # a failed item leaves no stanza behind
                assert not any(outcome.label.split("#")[0].endswith("/" + Path(str(s.get("path", ""))).name)
                               for s in stanzas.values()), outcome
        known = set(stanzas)
    file_server.faults.clear()

    # everything that failed installs on a clean run (resume, fresh download): nothing was poisoned
    retry_lines = tuple(dict.fromkeys(failed_lines))
    if retry_lines:
        result = run_plan(InstallPlan(imports=retry_lines), layout, settings=settings)
        assert all(o.status in ("installed", "skipped") for o in result.outcomes), [
            (o.status, o.one_line()) for o in result.outcomes if o.status not in ("installed", "skipped")]
    known = set(check_registry(layout, served, known))
    assert len(known) == ROUNDS * FILES_PER_ROUND

    # --- part 2: SIGKILL a real installer (CLI + worker process) at random points -------------------
    env = dict(os.environ, INVOKEAI_DOWNLOAD_RETRIES="2", INVOKEAI_MAX_CONNECTIONS="4")
    env.pop("INVOKEAI_ROOT", None)
    base = [sys.executable, "-m", "invokeai_model_install", "--root", str(layout.root), "--add"]
    lines = [f"{file_server.url_for(name)}#sha256={digest}" for name, digest in kill_files]
    file_server.faults.throttle("/kill-*", 250_000)  # ~1.5 s a file: kills land mid-transfer as often as not
    kills = mid_transfer = 0
    for k in range(KILLS):
        # this kill's two new files, after every earlier one (those resume or are already there)
        spawned = time.time()
        proc = subprocess.Popen(base + lines[: 2 * (k + 1)], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        if k % 2:  # mid-transfer: once a partial download is on disk
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline and not _partials(layout, spawned):
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.0))
        else:  # anywhere: start-up, download, verify, place or register
            time.sleep(rng.uniform(0.5, 4.0))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
            mid_transfer += bool(_partials(layout, spawned))
        proc.wait(60)
        known = set(check_registry(layout, served, known))
    file_server.faults.clear()
    done = subprocess.run(base + lines, env=env, capture_output=True, text=True, timeout=300, start_new_session=True)
    assert done.returncode == 0, done.stderr
    final = check_registry(layout, served, known)
    assert len(final) == ROUNDS * FILES_PER_ROUND + len(kill_files)
    assert not [p for p in layout.partial_dir.rglob("*.part")], "a finished run leaves no partial download"

    with capsys.disabled():
        print(
            f"\nsoak (seed {SEED}): {ROUNDS} rounds, {ROUNDS * FILES_PER_ROUND} files, {sum(faults.values())} faults "
            f"injected ({dict(sorted(faults.items()))}), {retries} retries, outcomes {dict(outcomes)}, "
            f"{len(retry_lines)} re-run clean; {kills} SIGKILLs ({mid_transfer} during a transfer); "
            f"{len(final)} models registered, all verified"
        )


def test_a_rejected_download_is_not_kept_to_fail_the_next_run(layout, file_server):
    """Found by the soak: a plain URL (no reference hash) that sent wrong bytes failed the probe and its
    complete download stayed in staging, so every later run took it as downloaded and failed the same way."""
    name = make_lora_file(file_server.folder / "lora.safetensors", seed=5).name
    settings = DownloadSettings(retries=1, backoff=0.01, backoff_max=0.05)
    url = file_server.url_for(name)
    file_server.faults.corrupt("/" + name, times=None)
    (failed,) = run_plan(InstallPlan(imports=(url,)), layout, settings=settings).outcomes
    assert failed.status == "failed" and "not a safetensors file" in failed.message
    assert not [p for p in layout.partial_dir.rglob("*.safetensors")]
    file_server.faults.clear()
    (ok,) = run_plan(InstallPlan(imports=(url,)), layout, settings=settings).outcomes
    assert ok.status == "installed", ok.one_line()
    check_registry(layout, {name: sha256_of(file_server.folder / name)}, set())
