"""Renderers: plain lines off a terminal, rich progress on one; both only read events."""

import io

from rich.console import Console

from invokeai_model_install.events import (
    FileFinished, FileProgress, FileStarted, ItemFailed, ItemRegistered, ItemSkipped, ItemStarted, PlanFinished, PlanStarted,
    QuestionAsked, StageChanged,
)
from invokeai_model_install.app.render_rich import PlainRenderer, RichRenderer, human_bytes, make_renderer

EVENTS = [
    PlanStarted(items=("item1", "item2"), labels=("sd-1.5", "bad line"), total_bytes=3_000_000),
    ItemStarted(item="item1", label="sd-1.5"),
    StageChanged(item="item1", stage="download", detail="2 of 2 file(s)"),
    FileStarted(item="item1", name="unet.safetensors", total=2_000_000, resumed_from=500_000),
    FileProgress(item="item1", name="unet.safetensors", done=1_500_000, total=2_000_000, speed=1e6),
    FileFinished(item="item1", name="unet.safetensors", size=2_000_000, sha256="ab", fetched=1_500_000),
    ItemRegistered(item="item1", name="sd-1.5", path="models/diffusers/sd-1.5"),
    ItemStarted(item="item2", label="bad line"),
    ItemFailed(item="item2", message="bad line is not a source", hint="give a URL", error="SourceError"),
    QuestionAsked(item="item1", qid="q1", kind="prediction_type", prompt="epsilon or v?", choices=("epsilon", "v", "skip")),
    ItemSkipped(item="item1", reason="already installed"),
    PlanFinished(succeeded=1, skipped=0, failed=1),
]


def test_plain_lines():
    out = io.StringIO()
    r = PlainRenderer(out)
    for e in EVENTS:
        r(e)
    text = out.getvalue()
    assert text.splitlines()[0] == "Installing 2 item(s), 3.00 MB to fetch"
    assert "[1/2] sd-1.5" in text and "[2/2] bad line" in text
    assert "sd-1.5: fetching unet.safetensors (2.00 MB, resuming at 500.00 kB)" in text
    assert "sd-1.5: installed as sd-1.5 (models/diffusers/sd-1.5)" in text
    assert "bad line: FAILED (SourceError" in text
    assert "question: epsilon or v?" in text
    assert "skipped (already installed)" in text
    assert text.splitlines()[-1] == "Finished: 1 done, 0 skipped, 1 failed"
    assert "1.50 MB" not in text.split("fetching")[0]  # progress ticks are not printed


def test_rich_progress_tracks_files_and_overall():
    out = io.StringIO()
    r = RichRenderer(Console(file=out, force_terminal=True, width=120))
    with r:
        for e in EVENTS[:5]:
            r(e)
        overall = r.progress.tasks[r.overall]
        assert overall.total == 3_000_000 and overall.completed == 1_500_000
        assert len(r.files) == 1
        for e in EVENTS[5:]:
            r(e)
        assert r.files == {} and r.progress.tasks[r.overall].completed == 2_000_000
    text = out.getvalue()
    assert "installed as sd-1.5" in text and "Finished: 1 done" in text


def test_unknown_total_grows_with_files():
    r = RichRenderer(Console(file=io.StringIO(), force_terminal=True))
    r(PlanStarted(items=("item1",), labels=("x",), total_bytes=-1))
    r(FileStarted(item="item1", name="a", total=100))
    r(FileStarted(item="item1", name="b", total=50))
    assert r.progress.tasks[r.overall].total == 150


def test_make_renderer_picks_by_tty():
    assert isinstance(make_renderer(io.StringIO()), PlainRenderer)

    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert isinstance(make_renderer(Tty()), RichRenderer)
    assert isinstance(make_renderer(Tty(), plain=True), PlainRenderer)


def test_human_bytes():
    assert human_bytes(0) == "0 B" and human_bytes(4_270_000_000) == "4.27 GB" and human_bytes(-1) == "?"
