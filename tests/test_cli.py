"""The model-management commands of invokeai-model-install, in-process and through a subprocess."""

from __future__ import annotations

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
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.root.registry import Registry

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A set-up root with four models: a legacy file, a diffusers folder, a hub repo, one outside the root."""
    root = tmp_path / "invokeai"
    layout = RootLayout(root)
    create_layout(layout)
    ckpt = layout.kind_dir("main") / "legacy-1.safetensors"
    ckpt.write_bytes(b"weights")
    vae = layout.kind_dir("vae") / "shared.vae.pt"
    vae.write_bytes(b"vae")
    folder = layout.kind_dir("main-diffusers") / "folder-model"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    (folder / "unet" / "config.json").write_text("{}")
    outside = tmp_path / "elsewhere" / "outside.ckpt"
    outside.parent.mkdir()
    outside.write_bytes(b"not ours")
    with Registry(layout.models_yaml).transaction() as doc:
        doc.add(
            "legacy-1",
            {
                "description": "A legacy checkpoint",
                "weights": "models/checkpoints/legacy-1.safetensors",
                "config": "configs/stable-diffusion/v1-inference.yaml",
                "format": "ckpt",
                "vae": "models/vae/shared.vae.pt",
                "width": 512,
                "height": 512,
                "default": False,
                "custom_note": "keep me",
            },
        )
        doc.add(
            "folder-model",
            {"description": "A diffusers folder", "path": "models/sd/folder-model", "format": "diffusers", "default": True},
        )
        doc.add(
            "hub-model",
            {"description": "From the hub", "repo_id": "owner/hub-model", "format": "diffusers", "vae": {"repo_id": "stabilityai/sd-vae-ft-mse"}},
        )
        doc.add(
            "outside",
            {"description": "Lives outside the root", "weights": str(outside), "format": "ckpt", "vae": "models/vae/shared.vae.pt"},
        )
    return root


def run(root: Path, *args: str) -> int:
    return cli.main(["--root", str(root), *args])


def stanzas(root: Path) -> dict:
    return Registry(RootLayout(root).models_yaml).load()


# --- list ------------------------------------------------------------------------------


def test_list_json(root: Path, capsys) -> None:
    assert run(root, "list", "--json") == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in records] == ["legacy-1", "folder-model", "hub-model", "outside"]
    by_name = {r["name"]: r for r in records}
    for record in records:
        assert {"name", "format", "description", "default"} <= set(record)
    assert by_name["legacy-1"]["weights"] == "models/checkpoints/legacy-1.safetensors"
    assert by_name["legacy-1"]["vae"] == "models/vae/shared.vae.pt"
    assert by_name["legacy-1"]["format"] == "ckpt" and by_name["legacy-1"]["default"] is False
    assert by_name["folder-model"]["path"] == "models/sd/folder-model" and by_name["folder-model"]["default"] is True
    assert by_name["hub-model"]["repo_id"] == "owner/hub-model"
    assert by_name["hub-model"]["vae"] == {"repo_id": "stabilityai/sd-vae-ft-mse"}


def test_list_table(root: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert run(root, "list") == 0
    out = capsys.readouterr().out
    for text in ("legacy-1", "folder-model", "hub-model", "owner/hub-model", "A diffusers folder", "stabilityai/sd-vae-ft-mse"):
        assert text in out
    default_row = next(line for line in out.splitlines() if "folder-model" in line)
    assert "*" in default_row


def test_list_empty_root(tmp_path: Path, capsys) -> None:
    create_layout(RootLayout(tmp_path / "r"))
    assert run(tmp_path / "r", "list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []
    assert run(tmp_path / "r", "list") == 0
    assert "No models installed" in capsys.readouterr().out


def test_list_missing_root_is_one_line_error(tmp_path: Path, capsys) -> None:
    assert run(tmp_path / "nowhere", "list") == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(tmp_path / "nowhere") in err and "invokeai-configure" in err


def test_config_file_points_at_another_models_yaml(root: Path, tmp_path: Path, capsys) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("only-one:\n  description: from the other file\n  repo_id: a/b\n  format: diffusers\n")
    assert cli.main(["--root", str(root), "--config_file", str(other), "list", "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["only-one"]
    assert cli.main(["--root", str(root), "--config_file", str(other), "default", "only-one"]) == 0
    assert yaml.safe_load(other.read_text())["only-one"]["default"] is True
    assert "only-one" not in stanzas(root)


def test_root_from_environment(root: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("INVOKEAI_ROOT", str(root))
    assert cli.main(["list", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 4


def test_corrupt_models_yaml_is_reported_and_kept(root: Path, capsys) -> None:
    path = RootLayout(root).models_yaml
    path.write_text("a:\n  b: [1\n")
    assert run(root, "default", "a") == 1
    err = capsys.readouterr().err
    assert str(path) in err and "line" in err
    assert path.read_text() == "a:\n  b: [1\n"


# --- default ---------------------------------------------------------------------------


def test_default(root: Path, capsys) -> None:
    assert run(root, "default", "hub-model") == 0
    assert [n for n, s in stanzas(root).items() if s.get("default") is True] == ["hub-model"]
    assert "hub-model" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["default", "nope"], ["delete", "nope"], ["delete", "nope", "--purge"], ["edit", "nope", "--description", "x"]])
def test_unknown_name_exits_2_with_one_line(root: Path, capsys, command: list[str]) -> None:
    before = RootLayout(root).models_yaml.read_text()
    assert run(root, *command) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "'nope'" in err and "invokeai-model-install list" in err
    assert RootLayout(root).models_yaml.read_text() == before


# --- delete ----------------------------------------------------------------------------


def test_delete_keeps_files(root: Path) -> None:
    assert run(root, "delete", "folder-model") == 0
    assert "folder-model" not in stanzas(root)
    assert (root / "models/sd/folder-model/model_index.json").exists()


def test_delete_purge_removes_files_inside_models_only(root: Path, capsys) -> None:
    assert run(root, "delete", "folder-model", "--purge") == 0
    assert not (root / "models/sd/folder-model").exists()
    assert (root / "models/sd").is_dir()
    capsys.readouterr()

    # a model outside the root: stanza dropped, its file reported and kept
    outside = Path(stanzas(root)["outside"]["weights"])
    assert run(root, "delete", "outside", "--purge") == 0
    out = capsys.readouterr().out
    assert outside.exists() and f"kept {outside}" in out and "outside" in out
    # its VAE is still used by legacy-1: kept as well
    assert (root / "models/vae/shared.vae.pt").exists() and "still used by legacy-1" in out

    assert run(root, "delete", "legacy-1", "--purge") == 0
    assert not (root / "models/checkpoints/legacy-1.safetensors").exists()
    assert not (root / "models/vae/shared.vae.pt").exists()  # the last user is gone
    assert set(stanzas(root)) == {"hub-model"}


def test_purge_refuses_paths_escaping_models(root: Path, tmp_path: Path, capsys) -> None:
    victim = root / "configs" / "precious.txt"
    victim.write_text("keep")
    link_target = tmp_path / "linked"
    link_target.mkdir()
    (link_target / "data.bin").write_bytes(b"x")
    (root / "models" / "sd" / "sneaky").symlink_to(link_target)
    with Registry(RootLayout(root).models_yaml).transaction() as doc:
        doc.add("dotdot", {"description": "escapes", "weights": "models/../configs/precious.txt", "format": "ckpt"})
        doc.add("symlinked", {"description": "symlink out", "path": "models/sd/sneaky", "format": "diffusers"})
        doc.add("whole-models", {"description": "points at a kind folder", "path": "models/sd", "format": "diffusers"})
    for name in ("dotdot", "symlinked", "whole-models"):
        assert run(root, "delete", name, "--purge") == 0
    out = capsys.readouterr().out
    assert victim.read_text() == "keep"
    assert (link_target / "data.bin").exists()
    assert (root / "models" / "sd" / "folder-model").exists()
    assert out.count("kept") == 3
    assert not {"dotdot", "symlinked", "whole-models"} & set(stanzas(root))


# --- edit ------------------------------------------------------------------------------


def test_edit_fields_of_a_legacy_model(root: Path) -> None:
    args = ["edit", "legacy-1", "--description", "New text", "--width", "768", "--height", "640", "--config", "v2-inference-v"]
    assert run(root, *args) == 0
    stanza = stanzas(root)["legacy-1"]
    assert stanza["description"] == "New text"
    assert (stanza["width"], stanza["height"]) == (768, 640)
    assert stanza["config"] == "configs/stable-diffusion/v2-inference-v.yaml"
    assert stanza["custom_note"] == "keep me"  # untouched fields survive
    # InvokeAI 2.3.5 gives a checkpoint model only a single-file VAE: a repo id is refused in one line
    assert run(root, "edit", "legacy-1", "--vae", "stabilityai/sd-vae-ft-ema") == 2
    assert run(root, "edit", "legacy-1", "--vae", str(root / "models/vae/shared.vae.pt")) == 0
    assert stanzas(root)["legacy-1"]["vae"] == "models/vae/shared.vae.pt"  # stored relative to the root
    assert run(root, "edit", "legacy-1", "--vae", "none") == 0
    assert "vae" not in stanzas(root)["legacy-1"]


def test_edit_config_with_a_file_path(root: Path, tmp_path: Path) -> None:
    custom = tmp_path / "custom.yaml"
    custom.write_text("model: {}\n")
    assert run(root, "edit", "legacy-1", "--config", str(custom)) == 0
    assert stanzas(root)["legacy-1"]["config"] == str(custom)  # outside the root: absolute
    assert run(root, "edit", "legacy-1", "--config", "no-such-config") == 2


def test_edit_vae_of_a_diffusers_model_and_rename(root: Path) -> None:
    assert run(root, "edit", "folder-model", "--vae", "stabilityai/sd-vae-ft-mse", "--name", "renamed") == 0
    names = list(stanzas(root))
    assert names == ["legacy-1", "renamed", "hub-model", "outside"]  # keeps its place
    assert stanzas(root)["renamed"]["vae"] == {"repo_id": "stabilityai/sd-vae-ft-mse"}
    assert stanzas(root)["renamed"]["default"] is True
    vae_dir = root / "models" / "vae" / "my-vae"
    vae_dir.mkdir()
    assert run(root, "edit", "renamed", "--vae", str(vae_dir)) == 0
    # 2.3.5 reads vae: {path: FOLDER} as a checkpoint file; a local diffusers VAE folder loads as {repo_id: ABSOLUTE PATH}
    assert stanzas(root)["renamed"]["vae"] == {"repo_id": str(vae_dir)}
    assert run(root, "edit", "legacy-1", "--vae", str(vae_dir)) == 2  # a folder for a checkpoint model: refused


def test_edit_errors(root: Path, capsys) -> None:
    before = RootLayout(root).models_yaml.read_text()
    assert run(root, "edit", "legacy-1") == 2  # nothing to change
    assert "nothing to change" in capsys.readouterr().err
    assert run(root, "edit", "hub-model", "--config", "v1-inference") == 2
    assert "diffusers" in capsys.readouterr().err
    assert run(root, "edit", "legacy-1", "--name", "bad name/with slash") == 2
    assert "not a valid model name" in capsys.readouterr().err
    assert run(root, "edit", "legacy-1", "--name", "hub-model") == 1
    assert "already installed" in capsys.readouterr().err
    assert run(root, "edit", "legacy-1", "--vae", "./does/not/exist.pt") == 2
    assert run(root, "edit", "legacy-1", "--width", "-5") == 2
    assert RootLayout(root).models_yaml.read_text() == before


# --- the installer entry (no subcommand) ------------------------------------------------------


def test_missing_root_without_tty_says_so_and_points_to_configure(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "no-root-here"
    assert run(missing) == 1
    err = capsys.readouterr().err.strip()
    assert str(missing) in err and "invokeai-configure" in err and "--create-root" in err
    # issue 11 item 8: never suggest what would also queue the recommended starters (--yes, a bare invokeai-configure)
    assert "--yes" not in err and "--skip-sd-weights" in err
    assert len(err.splitlines()) == 1
    assert not missing.exists()


def test_missing_root_with_yes_runs_the_setup(tmp_path: Path, capsys) -> None:
    empty_catalog = tmp_path / "empty.yaml"
    empty_catalog.write_text("{}\n")
    missing = tmp_path / "fresh-root"
    cli.main(["--root", str(missing), "--catalog", str(empty_catalog), "--yes"])
    layout = RootLayout(missing)
    assert layout.models_yaml.exists() and layout.init_file.exists()
    assert (layout.legacy_configs_dir / "v1-inference.yaml").exists()


def test_usage_error_exits_2(root: Path, capsys) -> None:
    assert run(root, "no-such-command") == 2
    assert run(root, "delete") == 2


# --- through a real process -----------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("INVOKEAI_ROOT", None)
    env["COLUMNS"] = "200"
    return env


def test_subprocess_list_and_bad_name(root: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "invokeai_model_install", "--root", str(root)]
    done = subprocess.run(cmd + ["list", "--json"], capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 4
    done = subprocess.run(cmd + ["delete", "ghost"], capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "'ghost'" in lines[0] and "invokeai-model-install list" in lines[0]


def test_help_lists_commands_and_never_imports_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from invokeai_model_install.app import cli\n"
        "rc = cli.main(['--help'])\n"
        "heavy = [m for m in ('torch', 'diffusers', 'npyscreen', 'transformers') if m in sys.modules]\n"
        "print('HEAVY:', heavy)\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for command in ("list", "delete", "edit", "default"):
        assert f"    {command} " in out
    for option in ("--root", "--config_file", "--catalog"):
        assert option in out
    assert "HEAVY: []" in out


# --- sidecar manifests follow the model ---------------------------------------------------------


def _write_manifest(root: Path, name: str) -> Path:
    from invokeai_model_install.root import manifest

    layout = RootLayout(root)
    record = manifest.Manifest(
        name=name, key=f"path:{name}", source=name, kind="main", format="diffusers", path=f"models/sd/{name}"
    )
    return manifest.write_manifest(layout, record)


def test_purge_removes_the_manifest_and_plain_delete_keeps_it(root: Path) -> None:
    folder_manifest = _write_manifest(root, "folder-model")
    hub_manifest = _write_manifest(root, "hub-model")
    assert run(root, "delete", "hub-model") == 0
    assert hub_manifest.exists()  # files still on disk: their record stays
    assert run(root, "delete", "folder-model", "--purge") == 0
    assert not folder_manifest.exists()


def test_rename_moves_the_manifest(root: Path) -> None:
    from invokeai_model_install.root import manifest

    old = _write_manifest(root, "folder-model")
    assert run(root, "edit", "folder-model", "--name", "new-name") == 0
    assert not old.exists()
    record = manifest.read_manifest(RootLayout(root), "new-name")
    assert record is not None and record.name == "new-name"


# --- on a terminal: the missing-root question ----------------------------------------------------


def _spawn(args: list[str], cwd: Path):
    import pexpect

    env = _env()
    env.update(TERM="xterm", LC_ALL="C.UTF-8")
    return pexpect.spawn(
        sys.executable, ["-m", "invokeai_model_install", *args], cwd=str(cwd), env=env, encoding="utf-8", timeout=60,
        dimensions=(40, 120),
    )


def test_terminal_missing_root_question_declined(tmp_path: Path) -> None:
    missing = tmp_path / "not-yet"
    child = _spawn(["--root", str(missing)], tmp_path)
    child.expect("There is no InvokeAI root at")
    child.expect(r"Run the first-run setup \(invokeai-configure\) to create it now\? \[Y/n\]")
    child.sendline("n")
    child.expect("no InvokeAI root at")
    child.expect(pexpect_eof())
    child.close()
    assert child.exitstatus == 1
    assert not missing.exists()


def test_terminal_missing_root_question_accepted_runs_the_setup(tmp_path: Path) -> None:
    missing = tmp_path / "created-on-request"
    child = _spawn(["--root", str(missing)], tmp_path)
    child.expect(r"\[Y/n\]")
    child.sendline("")
    child.expect("Created the InvokeAI root")
    child.expect("HuggingFace access token")  # the setup's next question: the root exists by now
    assert RootLayout(missing).models_yaml.is_file()
    assert (RootLayout(missing).legacy_configs_dir / "v1-inference.yaml").is_file()
    child.terminate(force=True)


def pexpect_eof():
    import pexpect

    return pexpect.EOF


def test_dry_run_on_a_missing_root_creates_nothing(tmp_path: Path, capsys) -> None:
    """--dry-run --yes on a root that does not exist resolves the plan but writes no skeleton."""
    missing = tmp_path / "nowhere"
    empty_catalog = tmp_path / "empty.yaml"
    empty_catalog.write_text("{}\n")
    local = tmp_path / "model.safetensors"
    local.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    code = cli.main(["--root", str(missing), "--catalog", str(empty_catalog), "--yes", "--dry-run", "--json",
                     "--add", str(local)])
    err = capsys.readouterr().err
    assert code == 0
    assert "does not create it" in err
    assert not missing.exists()


# --- issue 11: what a new user hit (items 5, 7, 8, 9) ------------------------------------------


def _catalog(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "stable-diffusion-1.5": {"description": "SD 1.5", "repo_id": "o/sd15", "format": "diffusers",
                                         "recommended": True, "default": True, "size": 4_270_000_000},
                "sd-inpainting-1.5": {"description": "inpainting", "repo_id": "o/inp", "format": "diffusers",
                                      "recommended": False, "size": 4_270_000_000},
                "hub-starter": {"description": "installed", "repo_id": "owner/hub-model", "format": "diffusers"},
            },
            sort_keys=False,
        )
    )
    return path


def test_default_refuses_a_support_model_with_one_line(root: Path, capsys) -> None:
    with Registry(RootLayout(root).models_yaml).transaction() as doc:
        doc.add("my-vae", {"description": "a VAE", "type": "vae", "format": "safetensors", "path": "models/vae/x.safetensors"})
    capsys.readouterr()
    assert run(root, "default", "my-vae") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'my-vae' is a VAE, not a main model" in err and "folder-model" in err
    assert stanzas(root)["folder-model"]["default"] is True and stanzas(root)["my-vae"].get("default") is None
    assert run(root, "default", "legacy-1") == 0  # a main model is still accepted


def test_default_refuses_a_model_whose_manifest_says_lora(root: Path, capsys) -> None:
    _write_manifest(root, "legacy-1")
    path = RootLayout(root).models_dir / ".manifests" / "legacy-1.json"
    record = json.loads(path.read_text())
    record["kind"] = "lora"
    path.write_text(json.dumps(record))
    assert run(root, "default", "legacy-1") == 2
    assert "is a LoRA, not a main model" in capsys.readouterr().err


def test_starters_lists_names_sizes_recommended_installed(root: Path, tmp_path: Path, capsys) -> None:
    catalog = _catalog(tmp_path)
    assert cli.main(["--root", str(root), "--catalog", str(catalog), "starters", "--json"]) == 0
    records = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert list(records) == ["stable-diffusion-1.5", "sd-inpainting-1.5", "hub-starter"]
    assert records["stable-diffusion-1.5"]["size"] == 4_270_000_000 and records["stable-diffusion-1.5"]["recommended"]
    assert not records["sd-inpainting-1.5"]["recommended"] and not records["sd-inpainting-1.5"]["installed"]
    assert records["hub-starter"]["installed"]  # registered as hub-model, by its repo id
    assert cli.main(["--root", str(root), "--catalog", str(catalog), "starters"]) == 0
    out = capsys.readouterr().out
    assert "stable-diffusion-1.5" in out and "4.27 GB" in out and "sd-inpainting-1.5" in out


def test_starters_mark_what_invokeai_23_cannot_run(root: Path, capsys) -> None:
    """The packaged catalogue: SDXL needs InvokeAI 3+, is not recommended, and `starters` says so."""
    assert cli.main(["--root", str(root), "starters", "--json"]) == 0
    records = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    xl = records["stable-diffusion-xl-base-1.0"]
    assert xl["requires"] == "invokeai>=3" and xl["runs_in"] == ["InvokeAI 3+", "ComfyUI"] and not xl["recommended"]
    assert records["stable-diffusion-1.5"]["requires"] == "" and "InvokeAI 2.3" in records["stable-diffusion-1.5"]["runs_in"]
    assert cli.main(["--root", str(root), "starters"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("stable-diffusion-xl-base-1.0"))
    assert "[needs InvokeAI 3+]" in line and "--download-unsupported" in out
    # asked for by name in a 2.3 root: skipped before any download, one line saying why and how to insist
    assert cli.main(["--root", str(root), "--add", "stable-diffusion-xl-base-1.0", "--json"]) == 0
    item = json.loads(capsys.readouterr().out)["items"][0]
    assert item["status"] == "skipped" and "InvokeAI 2.3.5 cannot run it" in item["message"]
    assert "ComfyUI" in item["message"] and "--download-unsupported" in item["message"] and item["fetched_bytes"] == 0


@pytest.mark.parametrize(
    "args, words",
    [
        (["--add", "stable-difusion-1.5"], "did you mean 'stable-diffusion-1.5'?"),
        (["--add", "inpainting"], "did you mean 'sd-inpainting-1.5'?"),
        (["--add", "ghost"], "invokeai-model-install starters"),
        (["--dry-run", "--add", "stable-difusion-1.5"], "did you mean 'stable-diffusion-1.5'?"),
        (["--delete", "ghost"], "no model named 'ghost'"),
        (["--delete", "legacy-2"], "did you mean 'legacy-1'?"),
    ],
)
def test_unknown_names_exit_2_with_one_line_and_a_suggestion(root: Path, tmp_path: Path, capsys, args, words) -> None:
    before = RootLayout(root).models_yaml.read_text()
    assert cli.main(["--root", str(root), "--catalog", str(_catalog(tmp_path)), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    assert RootLayout(root).models_yaml.read_text() == before


def test_unknown_starter_in_a_plan_file_exits_2(root: Path, tmp_path: Path, capsys) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("install: [stable-diffusion-15]\n")
    assert cli.main(["--root", str(root), "--catalog", str(_catalog(tmp_path)), "--plan", str(plan)]) == 2
    assert "did you mean 'stable-diffusion-1.5'?" in capsys.readouterr().err


def test_create_root_creates_only_the_root(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "fresh"
    assert cli.main(["--root", str(missing), "--catalog", str(_catalog(tmp_path)), "--create-root"]) == 0
    layout = RootLayout(missing)
    assert layout.models_yaml.exists() and stanzas(missing) == {}
    assert not any(layout.partial_dir.rglob("*")) if layout.partial_dir.exists() else True


def test_help_epilog_points_to_commands_not_to_docs_files(capsys) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "docs/" not in out and ".md" not in out
    assert "COMMAND --help" in out and "starters" in out and "--create-root" in out
    for command in ("list", "delete", "edit", "default", "starters", "scan", "verify"):
        assert f"    {command} " in out


@pytest.mark.parametrize("purge", [False, True], ids=["delete", "delete --purge"])
def test_deleting_a_lora_registered_in_place_forgets_it_and_keeps_its_file(root: Path, tmp_path: Path, tiny_extras, capsys, purge) -> None:
    from invokeai_model_install.root import manifest

    lora = tmp_path / "ComfyUI" / "models" / "loras" / "style.safetensors"
    lora.parent.mkdir(parents=True)
    shutil.copy(tiny_extras["lora-sd-1.safetensors"], lora)
    assert cli.main(["--root", str(root), "--add", str(lora), "--in-place"]) == 0
    layout = RootLayout(root)
    assert manifest.read_manifest(layout, "style").path == str(lora)
    capsys.readouterr()
    assert run(root, "delete", "style", *(["--purge"] if purge else [])) == 0  # no "run it with --purge" detour
    out = capsys.readouterr().out
    assert lora.exists() and f"kept {lora}" in out and "registered in place" in out
    assert manifest.read_manifest(layout, "style") is None  # forgotten: `list` no longer shows it
