"""Questions the pipeline asks the front end (today: an SD-2 model's prediction type)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from invokeai_model_install.errors import InstallerError, QuestionUnanswered
from invokeai_model_install.events import QuestionAsked
from invokeai_model_install.install.item import ItemContext


def prediction_type(pr: Any, ctx: ItemContext, label: str) -> str | None:
    """The prediction type to use for an SD-2 main model; asks when undecided."""
    if pr.base != "sd-2" or pr.kind != "main":
        return None
    if pr.prediction_type in ("epsilon", "v"):
        return pr.prediction_type  # the file (or its companion .yaml) says; --prediction-type answers only the undecided
    if ctx.plan.prediction_type:
        return ctx.plan.prediction_type
    return ask_prediction(ctx, label)


class SkippedByUser(InstallerError):
    """The user answered "skip" to a question about this item."""


def _ask(ctx: ItemContext, kind: str, prompt: str, choices: tuple[str, ...], labels: tuple[str, ...]) -> str | None:
    """Put one question to the front end (a plan-unique id); -> its answer, None when nobody can answer."""
    if ctx.ask is None:
        return None
    ctx.qcount[0] += 1
    q = QuestionAsked(qid=f"q{ctx.qcount[0]}-{os.getpid()}", kind=kind, prompt=prompt, choices=choices, labels=labels)
    ctx.emit(q)
    return ctx.ask(q)


def ask_prediction(ctx: ItemContext, label: str) -> str:
    """Ask the front end for an SD-2 prediction type; no answer -> QuestionUnanswered naming the flag."""
    if ctx.plan.prediction_type:
        return ctx.plan.prediction_type
    answer = _ask(
        ctx, "prediction_type",
        f"{label} is a Stable Diffusion 2 model; was it trained for epsilon or v-prediction? "
        "(768-pixel SD-2 models are usually v; 512-pixel base models epsilon)",
        ("epsilon", "v", "skip"),
        ("epsilon (SD-2 512 base)", "v-prediction (SD-2 768)", "skip this model"),
    )
    if answer in ("epsilon", "v"):
        return answer
    if answer == "skip":
        raise SkippedByUser(f"{label}: skipped (prediction type not given)", "")
    raise QuestionUnanswered(
        f"{label}: an SD-2 model whose prediction type cannot be read from the file; it was skipped",
        "answer it with --prediction-type epsilon|v (v for 768-pixel SD-2 models, epsilon for 512-pixel base ones)",
    )


def ask_suspicious(ctx: ItemContext, label: str, file_name: str, reason: str) -> bool:
    """Ask the front end whether to install one suspicious pickle anyway; the default (and no answer) refuses."""
    return _ask(
        ctx, "suspicious",
        f"{label}: {file_name} is a suspicious pickle: {reason}. InvokeAI 2.3 runs such imports when it "
        "loads the file. Install it anyway?",
        ("refuse", "install"),
        ("refuse it (recommended)", "install it anyway: I trust where it comes from"),
    ) == "install"


def convert_answering(src: Path, tmp: Path, ctx: ItemContext, label: str, **kwargs: Any) -> None:
    """``convert_checkpoint(src, tmp, **kwargs)``; when it cannot tell an SD-2 model's prediction type,
    ask the front end and convert again with the answer.  ``tmp`` is removed on any failure."""
    from invokeai_model_install.convert import checkpoint as conv

    try:
        try:
            conv.convert_checkpoint(src, tmp, **kwargs)
        except QuestionUnanswered:
            if kwargs.get("prediction_type") is not None:
                raise
            kwargs["prediction_type"] = ask_prediction(ctx, label)
            if tmp.exists():
                shutil.rmtree(tmp)
            conv.convert_checkpoint(src, tmp, **kwargs)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
