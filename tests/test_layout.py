"""Root directory: precedence of --root / INVOKEAI_ROOT / ~/invokeai, and the paths under it."""

from __future__ import annotations

from pathlib import Path

from invokeai_model_install.root.layout import KIND_DIRS, RootLayout, resolve_root


def test_cli_root_beats_environment_beats_home(tmp_path: Path) -> None:
    env = {"INVOKEAI_ROOT": str(tmp_path / "from-env"), "HOME": str(tmp_path / "home")}
    assert resolve_root(str(tmp_path / "from-cli"), env) == tmp_path / "from-cli"
    assert resolve_root(None, env) == tmp_path / "from-env"
    assert resolve_root(None, {"HOME": str(tmp_path / "home")}) == tmp_path / "home" / "invokeai"
    assert resolve_root("", {"INVOKEAI_ROOT": "", "HOME": str(tmp_path / "h")}) == tmp_path / "h" / "invokeai"


def test_root_is_expanded_and_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_root("~/x", {"HOME": str(tmp_path)}) == tmp_path / "x"
    monkeypatch.chdir(tmp_path)
    assert resolve_root("rel/root", {}) == tmp_path / "rel" / "root"
    assert resolve_root("rel/root", {}).is_absolute()


def test_cli_uses_the_same_precedence(tmp_path: Path) -> None:
    from invokeai_model_install.app.cli import build_parser
    from invokeai_model_install.app.common import make_layout

    parser = build_parser()
    env = {"INVOKEAI_ROOT": str(tmp_path / "env"), "HOME": str(tmp_path / "home")}
    assert make_layout(parser.parse_args(["--root", str(tmp_path / "cli"), "list"]), env).root == tmp_path / "cli"
    assert make_layout(parser.parse_args(["list"]), env).root == tmp_path / "env"
    assert make_layout(parser.parse_args(["list"]), {"HOME": str(tmp_path / "home")}).root == tmp_path / "home" / "invokeai"
    layout = make_layout(parser.parse_args(["--config_file", str(tmp_path / "m.yaml"), "list"]), env)
    assert layout.models_yaml == tmp_path / "m.yaml"


def test_layout_paths(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path)
    assert layout.models_yaml == tmp_path / "configs" / "models.yaml"
    assert layout.legacy_configs_dir == tmp_path / "configs" / "stable-diffusion"
    assert layout.init_file == tmp_path / "invokeai.init"
    assert layout.kind_dir("main") == tmp_path / "models" / "checkpoints"
    # where InvokeAI 2.3.5 finds each kind (docs/compatibility.md); never models/diffusers
    assert layout.kind_dir("main-diffusers") == tmp_path / "models" / "sd"
    assert layout.converted_dir == tmp_path / "models" / "converted_ckpts"
    assert layout.kind_dir("lora") == tmp_path / "loras"
    assert layout.kind_dir("embedding") == tmp_path / "embeddings"
    assert layout.hub_dir == tmp_path / "models" / "hub"
    assert layout.hf_repo_dir("openai/clip-vit-large-patch14") == tmp_path / "models" / "hub" / "models--openai--clip-vit-large-patch14"
    assert layout.version_file == tmp_path / ".version"
    assert set(KIND_DIRS) == {"main", "main-diffusers", "vae", "lora", "embedding", "controlnet",
                              "upscaler", "text_encoder", "clip_vision", "ip_adapter", "t2i_adapter"}
    assert layout.kind_dir("upscaler") == tmp_path / "models" / "upscale_models"
    assert layout.legacy_diffusers_dir not in layout.folders()
    assert all("diffusers" not in p.relative_to(tmp_path).parts for p in layout.folders())
    assert not layout.exists()
    (tmp_path / "configs").mkdir()
    assert layout.exists()
    assert RootLayout(tmp_path, tmp_path / "x.yaml").models_yaml == tmp_path / "x.yaml"


def test_relative_and_absolute(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path / "root")
    inside = tmp_path / "root" / "models" / "vae" / "a.pt"
    outside = tmp_path / "other" / "b.pt"
    assert layout.relative(inside) == "models/vae/a.pt"
    assert layout.relative(outside) == str(outside)
    assert layout.absolute("models/vae/a.pt") == inside
    assert layout.absolute(str(outside)) == outside


def test_is_inside_models_resolves_dotdot_and_symlinks(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path / "root")
    (layout.models_dir / "lora").mkdir(parents=True)
    assert layout.is_inside_models(layout.models_dir / "lora" / "x.safetensors")
    assert not layout.is_inside_models(layout.models_dir / ".." / "configs" / "models.yaml")
    assert not layout.is_inside_models(tmp_path / "elsewhere.ckpt")
    (tmp_path / "outside").mkdir()
    (layout.models_dir / "lora" / "link").symlink_to(tmp_path / "outside")
    assert not layout.is_inside_models(layout.models_dir / "lora" / "link" / "file.bin")
    # ROOT/loras and ROOT/embeddings are ours to manage too (2.3.5 reads them)
    assert layout.is_inside_models(layout.kind_dir("lora") / "x.safetensors")
    assert layout.is_inside_models(layout.kind_dir("embedding") / "sub" / "y.pt")
    assert not layout.is_inside_models(layout.root / "configs" / "models.yaml")
