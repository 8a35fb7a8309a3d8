"""invokeai-configure: creating and repairing a root without losing anything, and the token store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from invokeai_model_install.app import configure

from invokeai_model_install.root import resources
from invokeai_model_install.errors import RootError
from invokeai_model_install.root.initfile import read_options, set_option
from invokeai_model_install.root.layout import KIND_DIRS, RootLayout
from invokeai_model_install.root.registry import DEFAULT_HEADER, Registry
from tests.support_repos import SUPPORT_REPO_IDS, make_support_repos


def _setup(layout: RootLayout, **kw) -> int:
    lines: list[str] = []
    rc = configure.setup_root(
        layout, yes=True, skip_sd_weights=True, skip_support_models=True, interactive=False, out=lines.append, **kw
    )
    return rc, lines


def test_creates_the_whole_layout(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path / "root")
    rc, lines = _setup(layout)
    assert rc == 0
    assert "Created the InvokeAI root" in lines[0]
    assert layout.models_yaml.read_text() == DEFAULT_HEADER
    assert layout.init_file.is_file() and read_options(layout.init_file) == []
    for kind in KIND_DIRS:
        assert layout.kind_dir(kind).is_dir()
    assert layout.hub_dir.is_dir() and layout.converted_dir.is_dir()
    assert not layout.legacy_diffusers_dir.exists()  # 2.3.5 moves anything there away at start-up
    assert (layout.root / ".version").read_text() == "2.3.5.post2\n"
    for name in resources.LEGACY_CONFIG_NAMES:
        copied = layout.legacy_configs_dir / name
        assert copied.read_bytes() == resources.legacy_config_path(name).read_bytes()
    assert any("Skipping the model download" in line for line in lines)


def test_rerun_keeps_models_init_lines_and_edited_configs(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path / "root")
    _setup(layout)
    with Registry(layout.models_yaml).transaction() as doc:
        doc.add("mine", {"description": "installed", "repo_id": "a/b", "format": "diffusers", "default": True})
    models_before = layout.models_yaml.read_text()
    layout.init_file.write_text("--outdir=/somewhere\n# my comment\n")
    set_option(layout.init_file, "--autoconvert", "/scan/me")
    init_before = layout.init_file.read_text()
    edited = layout.legacy_configs_dir / "v1-inference.yaml"
    edited.write_text("# my own tweaks\nmodel: {}\n")
    (layout.legacy_configs_dir / "v2-inference.yaml").unlink()  # a lost file comes back
    (layout.kind_dir("lora")).rmdir()

    rc, lines = _setup(layout)
    assert rc == 0
    assert "Checked the InvokeAI root" in lines[0]
    assert layout.models_yaml.read_text() == models_before
    assert layout.init_file.read_text() == init_before
    assert edited.read_text() == "# my own tweaks\nmodel: {}\n"
    assert any("kept your edited configs/stable-diffusion/v1-inference.yaml" in line for line in lines)
    assert (layout.legacy_configs_dir / "v2-inference.yaml").is_file()
    assert layout.kind_dir("lora").is_dir()


def test_root_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(RootError) as info:
        configure.create_layout(RootLayout(path))
    assert str(path) in info.value.one_line()
    assert configure.main(["--root", str(path), "--skip-sd-weights", "--skip-support-models"]) == 1


def test_main_with_skips(tmp_path: Path, capsys) -> None:
    root = tmp_path / "r"
    assert configure.main(["--root", str(root), "--yes", "--skip-sd-weights", "--skip-support-models"]) == 0
    assert RootLayout(root).models_yaml.exists()
    assert "Skipping the model download" in capsys.readouterr().out


def test_installer_arguments_for_the_model_step(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path / "r")
    base = ["--root", str(layout.root)]
    # the starters bring their VAEs; --support-models: what InvokeAI 2.3.5 needs for checkpoint models
    assert configure.installer_argv(layout) == base + ["--yes", "--support-models"]
    assert configure.installer_argv(layout, skip_sd_weights=True) == base + ["--support-models"]
    assert configure.installer_argv(layout, default_only=True) == base + ["--default_only", "--support-models"]
    assert configure.installer_argv(layout, skip_support_models=True) == base + ["--yes"]
    assert configure.installer_argv(layout, skip_sd_weights=True, skip_support_models=True) is None
    catalog = tmp_path / "c.yaml"
    catalog.write_text("m:\n  description: d\n  repo_id: a/m\n  vae: {repo_id: a/vae}\n")
    other = RootLayout(layout.root, tmp_path / "m.yaml")
    assert configure.installer_argv(other, catalog_path=catalog) == base + [
        "--config_file",
        str(tmp_path / "m.yaml"),
        "--catalog",
        str(catalog),
        "--yes",
        "--support-models",
    ]
    # the arguments are ones the installer's own parser accepts
    from invokeai_model_install.app.cli import build_parser

    args = build_parser().parse_args(configure.installer_argv(layout, skip_support_models=True))
    assert args.yes is True and args.root == str(layout.root)


def test_interactive_token_prompt_can_be_skipped(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path / "r")
    asked: list[str] = []
    rc = configure.setup_root(
        layout, interactive=True, open_installer=False, ask=lambda prompt: asked.append(prompt) or "", out=lambda s: None
    )
    assert rc == 0
    assert len(asked) == 1 and "huggingface.co/settings/tokens" in asked[0]


def test_token_goes_to_huggingface_store_without_network(tmp_path: Path) -> None:
    """Run in a fresh process: its own HF_HOME, and an endpoint nothing listens on (a network call would fail)."""
    root = tmp_path / "root"
    hf_home = tmp_path / "hf-home"
    token = "hf_TestTokenThatIsNotReal1234567890"
    code = (
        "import sys\n"
        "from invokeai_model_install.app import configure\n"
        "from pathlib import Path\nfrom invokeai_model_install.root.layout import RootLayout\n"
        f"rc = configure.setup_root(RootLayout(Path(sys.argv[1])), yes=True, skip_sd_weights=True, skip_support_models=True, hf_token={token!r}, interactive=False)\n"
        "from huggingface_hub import get_token\n"
        "print('TOKEN', get_token())\n"
        "sys.exit(rc)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_HOME=str(hf_home), HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_DISABLE_TELEMETRY="1")
    done = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"TOKEN {token}" in done.stdout
    assert (hf_home / "token").read_text().strip() == token
    # never written into our own files
    for path in root.rglob("*"):
        if path.is_file():
            assert token not in path.read_text(errors="replace"), path


# --- end to end against the stand-in hub ------------------------------------------------------------

E2E_CATALOG = """
tiny-sd:
  description: Tiny SD-1 starter
  repo_id: test/tiny-sd
  format: diffusers
  vae:
    repo_id: test/tiny-vae
  recommended: true
  default: true
  size: 60000000
not-recommended:
  description: Never installed by --yes
  repo_id: test/absent
  format: diffusers
  size: 1
"""


@pytest.fixture
def e2e_hub(hub_server, tiny_models, tmp_path):
    hub_server.add_repo("test/tiny-sd", tiny_models["sd-1"])
    hub_server.add_repo("test/tiny-vae", tiny_models["sd-1"] / "vae")
    for repo, folder in make_support_repos(tmp_path / "support").items():
        hub_server.add_repo(repo, folder)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(E2E_CATALOG)
    return hub_server, catalog


def _support_snapshot(layout: RootLayout, repo: str) -> Path:
    cache = layout.hf_repo_dir(repo)
    return cache / "snapshots" / (cache / "refs" / "main").read_text()


def test_yes_installs_recommended_and_support_models_and_a_rerun_keeps_everything(e2e_hub, tmp_path, capsys) -> None:
    hub, catalog = e2e_hub
    layout = RootLayout(tmp_path / "root")
    argv = ["--root", str(layout.root), "--yes", "--catalog", str(catalog)]
    assert configure.main(argv) == 0, capsys.readouterr().err
    stanzas = Registry(layout.models_yaml).load()
    assert stanzas["tiny-sd"]["default"] is True
    assert (layout.root / stanzas["tiny-sd"]["path"] / "model_index.json").is_file()
    assert stanzas["tiny-sd"]["vae"] == {"repo_id": "test/tiny-vae"}  # from the HF cache, as 2.3.5 reads it
    assert set(stanzas) == {"tiny-sd"}  # no VAE stanza, "not-recommended" not installed
    assert (layout.root / ".version").read_text().strip() == "2.3.5.post2"
    # the support models 2.3.5 needs for checkpoint models, where it reads them (HF cache layout, refs/main)
    for repo in SUPPORT_REPO_IDS:
        snap = _support_snapshot(layout, repo)
        assert snap.is_dir(), repo
    clip = _support_snapshot(layout, "openai/clip-vit-large-patch14")
    assert sorted(p.name for p in clip.iterdir()) == sorted(["config.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                                                             "special_tokens_map.json", "model.safetensors"])
    sd2 = _support_snapshot(layout, "stabilityai/stable-diffusion-2")
    assert sorted(p.relative_to(sd2).as_posix() for p in sd2.rglob("*") if p.is_file()) == sorted(
        ["text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer/vocab.json", "tokenizer/merges.txt",
         "tokenizer/tokenizer_config.json", "tokenizer/special_tokens_map.json"])  # never the unet, never .bin next to .safetensors
    from invokeai_model_install.root import manifest as mf

    m = mf.read_manifest(layout, "support--openai--clip-vit-large-patch14")
    assert m.kind == "support" and all(len(f.sha256) == 64 for f in m.files) and not mf.verify_manifest(layout, m, full=True)
    assert "support" not in {r.kind for r in mf.unregistered(layout)}
    served = hub.stats.served("/*")
    assert hub.stats.served("/test/tiny-sd/*") > 0
    models_before = layout.models_yaml.read_text()

    assert configure.main(argv) == 0, capsys.readouterr().err
    assert layout.models_yaml.read_text() == models_before
    assert hub.stats.served("/*") == served  # nothing fetched again, support models included


def test_skip_sd_weights_installs_only_the_support_models(e2e_hub, tmp_path, capsys) -> None:
    hub, catalog = e2e_hub
    layout = RootLayout(tmp_path / "root")
    assert configure.main(["--root", str(layout.root), "--yes", "--skip-sd-weights", "--catalog", str(catalog)]) == 0, (
        capsys.readouterr().err
    )
    stanzas = Registry(layout.models_yaml).load()
    assert "tiny-sd" not in stanzas
    assert all(_support_snapshot(layout, repo).is_dir() for repo in SUPPORT_REPO_IDS)
    assert hub.stats.served("/test/*") == 0


def test_skip_support_models_fetches_none_of_them(e2e_hub, tmp_path, capsys) -> None:
    hub, catalog = e2e_hub
    layout = RootLayout(tmp_path / "root")
    assert configure.main(["--root", str(layout.root), "--yes", "--skip-support-models", "--catalog", str(catalog)]) == 0, (
        capsys.readouterr().err
    )
    assert "tiny-sd" in Registry(layout.models_yaml).load()
    assert not any(layout.hf_repo_dir(repo).exists() for repo in SUPPORT_REPO_IDS)
    for repo in SUPPORT_REPO_IDS:
        assert hub.stats.served(f"/{repo}/*") == 0


def test_launcher_menu7_default_only(e2e_hub, tmp_path, capsys) -> None:
    """invoke.sh menu 7: `invokeai-configure --root R --yes --default_only` installs only the default starter."""
    hub, catalog = e2e_hub
    layout = RootLayout(tmp_path / "root")
    argv = ["--root", str(layout.root), "--yes", "--default_only", "--skip-support-models", "--catalog", str(catalog)]
    assert configure.main(argv) == 0, capsys.readouterr().err
    assert set(Registry(layout.models_yaml).load()) == {"tiny-sd"}


def test_launcher_menu6_abbreviation_parses() -> None:
    """invoke.bat menu 6 passes `--skip-sd-weight` (an argparse abbreviation of --skip-sd-weights)."""
    args = configure.build_parser().parse_args(["--skip-sd-weight", "--skip-support-models"])
    assert args.skip_sd_weights and args.skip_support_models


def test_wizard_back_returns_to_the_token_page_then_the_form_again(tmp_path: Path) -> None:
    """BACK on the installer page goes to the wizard's previous page (the token question), not to an exit."""
    from invokeai_model_install.app.tui.app import FormResult

    questions: list[str] = []
    form_results = [FormResult.BACK, FormResult.OK]
    calls: list[dict] = []

    def form(layout, **kw):
        calls.append(kw)
        return form_results[len(calls) - 1]

    rc = configure.setup_root(
        RootLayout(tmp_path / "root"), interactive=True, ask=lambda q: questions.append(q) or "", form=form, out=lambda s: None
    )
    assert rc == 0
    assert len(questions) == 2 and len(calls) == 2
    assert all(kw["wizard"] is True for kw in calls)
