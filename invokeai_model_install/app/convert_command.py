"""``invokeai-model-install convert NAME [--delete-original]``: an installed checkpoint to diffusers (the seed's ``!optimize_model``).

No download: the file that models.yaml points at is converted into
``models/converted_ckpts/NAME`` and the stanza is replaced (same name, same place in the
file, same description and default flag).  The original file is kept unless
``--delete-original``, and is deleted only when it lies inside ``ROOT/models``.
The work is the core's (:mod:`install.convert_installed`), run as a plan item like
any install: progress on the terminal, the SD-2 question, Ctrl-C to cancel.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register_subcommand(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert an installed checkpoint model to diffusers (no download)",
        description="Convert an installed single-file (.ckpt/.safetensors) main model into a diffusers folder under "
        "ROOT/models/converted_ckpts and register that in place of the checkpoint's stanza. The original file is kept "
        "unless --delete-original (only files inside ROOT/models are ever deleted).",
    )
    p.add_argument("model_name", metavar="NAME", help="the model's name (see `list`)")
    p.add_argument("--delete-original", "--delete_original", dest="delete_original", action="store_true",
                   help="delete the checkpoint file after a successful conversion (only inside ROOT/models)")
    p.add_argument("--prediction-type", "--prediction_type", dest="convert_prediction", choices=("epsilon", "v"),
                   help="for SD-2 models whose prediction type cannot be told from the file or its config")
    p.add_argument("--json", dest="sub_json", action="store_true", help="print a machine-readable result (JSON)")
    p.set_defaults(handler=cmd_convert)


def cmd_convert(args: argparse.Namespace, layout: Any, catalog_path: Path | None) -> int:
    from invokeai_model_install.app import headless
    from invokeai_model_install.errors import RootError
    from invokeai_model_install.install.convert_installed import check_convertible
    from invokeai_model_install.install.plan import InstallPlan
    from invokeai_model_install.root.registry import Registry

    if not layout.models_yaml.exists():
        raise RootError(f"no InvokeAI root at {layout.root} (no {layout.models_yaml})")
    stanza = Registry(layout.models_yaml).load().get(args.model_name)
    check_convertible(stanza, args.model_name, layout)  # unknown name: exit 2; not convertible: exit 1, before any work
    plan = InstallPlan(
        convert_models=(args.model_name,),
        delete_original=bool(args.delete_original),
        prediction_type=getattr(args, "convert_prediction", None) or getattr(args, "prediction_type", None),
        precision="fp32" if getattr(args, "full_precision", False) else "fp16",
        device=getattr(args, "device", None) or "auto",
    )
    return headless.execute(plan, layout, catalog_path, as_json=bool(getattr(args, "sub_json", False)),
                            settings=headless.settings_from_args(args))
