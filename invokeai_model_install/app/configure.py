"""``invokeai-configure``: the first-run setup of an InvokeAI root.

Steps, each safe to re-run (nothing that exists is overwritten or lost):

1. create the layout (:meth:`RootLayout.folders`: ``configs/``, ``configs/stable-diffusion/`` with the
   packaged legacy LDM configs copied only where missing, ``loras/``, ``embeddings/``, the
   ``models/`` folders), an empty ``configs/models.yaml`` with its header comment,
   ``invokeai.init`` (only a header when new; existing lines are kept) and, in a root it creates,
   ``.version`` (``2.3.5.post2``: InvokeAI 2.3.5 then skips its own upgrade step); a root written
   by an earlier version of this package is migrated to the 2.3.5 layout (``install.migrate``);
2. optionally store a HuggingFace access token in huggingface_hub's own token
   store (never in our files), without any network call;
3. open the installer: the form in a terminal (``wizard=True``), else the
   headless installer with the recommended starters (``--skip-sd-weights``
   skips them) and the *support models* (``--skip-support-models`` skips them).

*Support models* are the three hub repos InvokeAI 2.3.5 needs to load any checkpoint
(``format: ckpt``) model: ``openai/clip-vit-large-patch14``, ``CompVis/stable-diffusion-safety-checker``
and ``stabilityai/stable-diffusion-2`` (tokenizer and text encoder only), placed in the HF cache
``ROOT/models/hub`` (see :mod:`invokeai_model_install.install.support`).
"""

from __future__ import annotations

import argparse
import filecmp
import getpass
import shutil
import sys
from pathlib import Path
from typing import Callable, Sequence

from invokeai_model_install.app.common import exit_status, is_interactive, make_layout
from invokeai_model_install.errors import ConfigError, RootError, from_os_error
from invokeai_model_install.root.layout import RootLayout

#: Name under which our token goes into huggingface_hub's stored tokens.
HF_TOKEN_NAME = "invokeai-model-install"


def create_layout(layout: RootLayout) -> list[Path]:
    """Create the root's folders and files where missing; returns what was created."""
    from invokeai_model_install.root.initfile import ensure_init_file
    from invokeai_model_install.root.registry import Registry
    from invokeai_model_install.root.resources import legacy_configs_dir

    created: list[Path] = []
    if layout.root.exists() and not layout.root.is_dir():
        raise RootError(f"{layout.root} exists and is not a folder", "choose another --root")
    new_root = not layout.exists()
    for folder in layout.folders():
        if not folder.is_dir():
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise from_os_error(exc, folder) from None
            created.append(folder)
    for source in sorted(legacy_configs_dir().glob("*.yaml")):
        target = layout.legacy_configs_dir / source.name
        if not target.exists():
            shutil.copyfile(source, target)
            created.append(target)
        # A config the user changed is theirs: it is kept as is (never overwritten).
    if not layout.models_yaml.exists():
        Registry(layout.models_yaml).ensure_exists()
        created.append(layout.models_yaml)
    if ensure_init_file(layout.init_file):
        created.append(layout.init_file)
    if new_root and not layout.version_file.exists():
        from invokeai_model_install.install.migrate import write_version

        write_version(layout)
        created.append(layout.version_file)
    return created


def legacy_configs_differing(layout: RootLayout) -> list[str]:
    """Names of root legacy configs that differ from the packaged copies (kept; reported)."""
    from invokeai_model_install.root.resources import legacy_configs_dir

    out = []
    for source in sorted(legacy_configs_dir().glob("*.yaml")):
        target = layout.legacy_configs_dir / source.name
        if target.exists() and not filecmp.cmp(source, target, shallow=False):
            out.append(source.name)
    return out


def save_hf_token(token: str) -> None:
    """Store a HuggingFace token in huggingface_hub's token store, with no network call.

    ``huggingface_hub.login(token)`` validates the token with a ``whoami``
    request first; offline (or against a mirror) that fails.  huggingface_hub
    2.4 has no public offline call, so we use the two steps ``login`` itself
    runs after validating: ``_save_token`` (the stored-tokens file) and
    ``_set_active_token`` (the ``token`` file every hub call reads).
    """
    token = token.strip()
    if not token:
        raise ConfigError("the HuggingFace token is empty", "paste the token from https://huggingface.co/settings/tokens")
    try:
        from huggingface_hub._login import _set_active_token
        from huggingface_hub.utils._auth import _save_token
    except ImportError:  # an older huggingface_hub: HfFolder wrote the token file directly
        from huggingface_hub import HfFolder  # type: ignore[attr-defined]

        HfFolder.save_token(token)
        return
    _save_token(token=token, token_name=HF_TOKEN_NAME)
    _set_active_token(token_name=HF_TOKEN_NAME, add_to_git_credential=False)


def _model_step(skip_sd_weights: bool, skip_support_models: bool, default_only: bool = False) -> tuple[str | None, bool]:
    """(the starters flag: ``--yes``, ``--default_only`` or None; the support models?) of the setup's model step.

    The recommended starters bring their VAEs with them; the support models are what InvokeAI 2.3.5 needs
    to load any checkpoint (``install.support``)."""
    starters = None if skip_sd_weights else ("--default_only" if default_only else "--yes")
    return starters, not skip_support_models


def installer_argv(
    layout: RootLayout,
    *,
    skip_sd_weights: bool = False,
    skip_support_models: bool = False,
    catalog_path: Path | None = None,
    default_only: bool = False,
) -> list[str] | None:
    """The setup's model step as ``invokeai-model-install`` arguments (None: nothing to do): the command a user
    runs to do the same later (docs/cli.md, `invokeai-configure`)."""
    starters, support = _model_step(skip_sd_weights, skip_support_models, default_only)
    argv = ["--root", str(layout.root)]
    if layout.config_file_override is not None:
        argv += ["--config_file", str(layout.config_file_override)]
    if catalog_path is not None:
        argv += ["--catalog", str(catalog_path)]
    plan: list[str] = [starters] if starters else []
    if support:
        plan.append("--support-models")
    if not plan:
        return None
    return argv + plan


def run_model_step(
    layout: RootLayout,
    *,
    skip_sd_weights: bool = False,
    skip_support_models: bool = False,
    catalog_path: Path | None = None,
    default_only: bool = False,
) -> int | None:
    """Install the recommended (or only the default) starters and the support models headless; None when both are skipped."""
    starters, support = _model_step(skip_sd_weights, skip_support_models, default_only)
    if not starters and not support:
        return None
    from invokeai_model_install.app import headless

    flags = argparse.Namespace(yes=starters == "--yes", default_only=starters == "--default_only", support_models=support)
    return exit_status(lambda: headless.run_headless(flags, layout, catalog_path))


def setup_root(
    layout: RootLayout,
    *,
    yes: bool = False,
    skip_sd_weights: bool = False,
    skip_support_models: bool = False,
    open_installer: bool = True,
    catalog_path: Path | None = None,
    hf_token: str | None = None,
    interactive: bool | None = None,
    ask: Callable[[str], str] | None = None,
    out: Callable[[str], None] = print,
    form: Callable[..., int] | None = None,
    default_only: bool = False,
) -> int:
    """Set up (or repair) the root, then run the installer; returns an exit status.

    :param yes: no questions: defaults everywhere, headless installer.
    :param open_installer: False when the caller runs the installer itself.
    :param hf_token: a token to store (the interactive run asks for one).
    :param interactive: override tty detection (tests).
    :param ask: how to ask for the token (default: ``getpass``).
    :param form: the installer form (default ``tui.app.run_form``); its BACK result returns to
        the wizard's previous page, the token question.
    """
    interactive = is_interactive() if interactive is None else interactive
    existed = layout.exists()
    if existed:
        from invokeai_model_install.install.migrate import migrate_root

        for line in migrate_root(layout):
            out(f"  {line}")
    created = create_layout(layout)
    out(f"{'Checked' if existed else 'Created'} the InvokeAI root at {layout.root}" + (f" ({len(created)} new)" if created else ""))
    for name in legacy_configs_differing(layout):
        out(f"  kept your edited configs/stable-diffusion/{name}")

    ask_token = hf_token is None and interactive and not yes
    while True:  # the wizard's pages: the token question, then the installer form (BACK returns here)
        if ask_token:
            ask = ask or (lambda prompt: getpass.getpass(prompt))
            hf_token = ask(
                "HuggingFace access token for gated models (from https://huggingface.co/settings/tokens; Enter to skip): "
            ).strip() or None
        if hf_token:
            save_hf_token(hf_token)
            out("Stored the HuggingFace token in huggingface_hub's token store.")

        if not open_installer:
            return 0
        if not (interactive and not yes):
            break
        if form is None:
            from invokeai_model_install.app.tui.app import run_form as form
        from invokeai_model_install.app.tui.app import FormResult

        result = form(layout, wizard=True, catalog_path=catalog_path)
        if result == FormResult.BACK:
            out("Back to the first-run setup.")
            hf_token, ask_token = None, True
            continue
        return int(result or 0)
    status = run_model_step(
        layout, skip_sd_weights=skip_sd_weights, skip_support_models=skip_support_models, catalog_path=catalog_path,
        default_only=default_only,
    )
    if status is None:
        out("Skipping the model download (--skip-sd-weights --skip-support-models).")
        return 0
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="invokeai-configure",
        description="Create (or repair) an InvokeAI root directory, then install the starter models.",
    )
    parser.add_argument("--root", metavar="DIR", help="InvokeAI root directory (default: $INVOKEAI_ROOT, else ~/invokeai)")
    parser.add_argument(
        "--config_file", "--config-file", dest="config_file", metavar="FILE", help="use this models.yaml instead of ROOT/configs/models.yaml"
    )
    parser.add_argument("--catalog", metavar="FILE", help="use this starter catalogue instead of the packaged one")
    parser.add_argument(
        "--yes", "-y", action="store_true", help="no questions: install the recommended starters and support models headless"
    )
    parser.add_argument("--skip-sd-weights", "--skip_sd_weights", dest="skip_sd_weights", action="store_true", help="do not install the starter models")
    parser.add_argument(
        "--skip-support-models",
        "--skip_support_models",
        dest="skip_support_models",
        action="store_true",
        help="do not install the support models InvokeAI 2.3.5 needs for checkpoint models (CLIP, the safety checker, "
        "the SD-2 text encoder, about 4.3 GB, into ROOT/models/hub)",
    )
    parser.add_argument(
        "--default_only",
        "--default-only",
        dest="default_only",
        action="store_true",
        help="install only the default starter model instead of the recommended ones (InvokeAI 2.3.5's launcher, menu 7)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``invokeai-configure``."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    layout = make_layout(args)
    catalog_path = Path(args.catalog).expanduser().absolute() if args.catalog else None
    return exit_status(lambda: setup_root(
        layout,
        yes=args.yes,
        skip_sd_weights=args.skip_sd_weights,
        skip_support_models=args.skip_support_models,
        catalog_path=catalog_path,
        default_only=args.default_only,
    ))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
