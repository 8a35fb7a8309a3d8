"""What the progress screen shows, computed from worker events (tui/progress.py; no curses).

The screen itself runs in the end-to-end pty tests; here the event folding and the
text of each line are checked with hand-made event sequences like the worker sends.
"""

from __future__ import annotations

from invokeai_model_install import events as ev
from invokeai_model_install.app.tui.progress import ProgressState, bar, format_eta


class FakeClock:
    """A clock the test moves by hand (the ETA line shows elapsed time)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def started(state: ProgressState) -> None:
    state.apply(ev.PlanStarted(items=("i1", "i2", "i3"), labels=("tiny-sd", "https://h/x.safetensors", "old-model"), total_bytes=3000))


def test_one_status_line_per_item_in_plan_order():
    state = ProgressState()
    started(state)
    lines = state.status_lines(80)
    assert len(lines) == 3
    assert lines[0].startswith("  tiny-sd") and "waiting" in lines[0]
    state.apply(ev.ItemStarted(item="i1", label="tiny-sd"))
    state.apply(ev.StageChanged(item="i1", stage="download", detail="3 files"))
    assert state.status_lines(80)[0].startswith("> tiny-sd") and "download: 3 files" in state.status_lines(80)[0]


def test_bar_shows_percent_speed_eta_and_file_name():
    state = ProgressState()
    started(state)
    state.apply(ev.FileStarted(item="i1", name="unet/model.safetensors", total=2_000_000))
    state.apply(ev.FileProgress(item="i1", name="unet/model.safetensors", done=500_000, total=2_000_000, speed=100_000))
    line = state.bar_line(100)
    assert " 25% " in line
    assert "500 KB/2.00 MB" in line
    assert "100 KB/s" in line
    assert "ETA 0:15" in line  # 1.5 MB left at 100 KB/s
    assert line.endswith("unet/model.safetensors")
    assert line.startswith("[") and len(line) <= 100


def test_bar_adds_up_parallel_files_and_unknown_sizes():
    state = ProgressState()
    state.apply(ev.FileProgress(item="i1", name="a", done=100, total=1000, speed=10))
    state.apply(ev.FileProgress(item="i1", name="b", done=300, total=1000, speed=30))
    line = state.bar_line(120)
    assert " 20% " in line and "2 files" in line and "ETA 0:40" in line
    state.apply(ev.FileProgress(item="i2", name="c", done=5, total=-1, speed=1))
    assert "?%" in state.bar_line(120) and "ETA --:--" in state.bar_line(120)


def test_finished_and_failed_items_go_to_the_log_with_hints():
    state = ProgressState()
    started(state)
    state.apply(ev.FileProgress(item="i1", name="a", done=1, total=2, speed=1))
    state.apply(ev.ItemRegistered(item="i1", name="tiny-sd", path="models/diffusers/tiny-sd"))
    state.apply(ev.ItemFailed(item="i2", message="https://h/x.safetensors: 404 Not Found", hint="check the spelling of the URL", error="NotFoundError"))
    state.apply(ev.ItemRemoved(item="i3", name="old-model", purged=("models/diffusers/old-model",)))
    assert state.files == {}  # a finished item's transfers leave the bar
    assert state.log == [
        "+ tiny-sd: installed as tiny-sd (models/diffusers/tiny-sd)",
        "! https://h/x.safetensors: 404 Not Found",  # the message already names the input: not repeated
        "    hint: check the spelling of the URL",
        "- old-model: removed from models.yaml, 1 path(s) deleted",
    ]
    marks = [line[0] for line in state.status_lines(80)]
    assert marks == ["+", "!", "-"]


def test_plan_level_notes_do_not_become_items():
    state = ProgressState()
    started(state)
    state.apply(ev.ItemNote(message="invokeai.init now scans /models at startup"))
    state.apply(ev.ItemSkipped(item="i1", reason="already installed"))
    assert len(state.status_lines(80)) == 3
    assert state.log == ["  invokeai.init now scans /models at startup", "= tiny-sd: skipped (already installed)"]


def test_summary_while_running_cancelling_and_at_the_end():
    clock = FakeClock()
    state = ProgressState(clock=clock)
    started(state)
    assert "Press c to cancel" in state.summary()
    state.cancelling = True
    assert "partial downloads are kept" in state.summary()
    state.apply(ev.FileFinished(item="i1", name="a", size=2_000_000, fetched=2_000_000))
    clock.now += 65
    state.apply(ev.PlanFinished(succeeded=1, skipped=0, failed=0, cancelled=True))
    assert state.summary().startswith("Cancelled: 1 done")
    assert "partial downloads are kept for resume" in state.summary()
    assert state.bar_line(80) == "Downloaded 2.00 MB in 1:05"
    # items that never ran are marked cancelled
    assert all("cancelled" in line for line in state.status_lines(80)[0:3])
    assert not state.failed


def test_failed_property_and_finished_summary():
    state = ProgressState()
    state.apply(ev.PlanFinished(succeeded=2, skipped=1, failed=1))
    assert state.summary() == "Finished: 2 done, 1 skipped, 1 failed."
    assert state.failed


def test_lines_never_exceed_the_width():
    state = ProgressState()
    state.apply(ev.PlanStarted(items=("x",), labels=("a-very-long-label-" * 5,)))
    state.apply(ev.ItemFailed(item="x", message="m" * 300, hint="h"))
    state.apply(ev.FileProgress(item="y", name="n" * 200, done=1, total=10, speed=1))
    for width in (30, 60, 100):
        assert all(len(line) <= width for line in state.status_lines(width))
        assert len(state.bar_line(width)) <= width


def test_bar_and_eta_helpers():
    assert bar(0.0, 12) == "[>         ]"
    assert bar(0.5, 12) == "[=====>    ]"
    assert bar(1.0, 12) == "[==========]"
    assert format_eta(None) == "--:--"
    assert format_eta(59.6) == "1:00"
    assert format_eta(3725) == "1:02:05"


# --- issue 11 items 4 and 6: long errors wrap; a cancel is shown as such, with the bytes kept ----------


def test_cancelled_item_shows_x_and_the_bytes_kept_for_resume():
    clock = FakeClock()
    state = ProgressState(clock=clock)
    started(state)
    state.apply(ev.ItemStarted(item="i2", label="https://h/x.safetensors"))
    state.apply(ev.FileStarted(item="i2", name="x.safetensors", total=1_000_000_000, resumed_from=100_000_000))
    state.apply(ev.FileProgress(item="i2", name="x.safetensors", done=525_000_000, total=1_000_000_000, speed=1e6))
    state.cancelling = True
    state.apply(ev.ItemFailed(item="i2", message="cancelled", hint="run the installer again to resume", error="Cancelled"))
    clock.now += 30
    state.apply(ev.PlanFinished(succeeded=0, skipped=0, failed=3, cancelled=True))  # the worker counts cancels as failed
    lines = state.status_lines(100)
    assert lines[1].startswith("x https://h/x.safetensors") and "kept 525 MB for resume" in lines[1]
    assert not any(line.startswith("!") for line in lines)
    assert state.summary() == "Cancelled: 0 done, 0 skipped, 0 failed, 3 cancelled; kept 525 MB for resume."
    # 425 MB came in this run (it resumed at 100 MB); 525 MB are on disk for the next run
    assert state.bar_line(100) == "Downloaded 425 MB in 0:30; kept 525 MB for resume"
    assert state.log[-1] == "x https://h/x.safetensors: cancelled, 525 MB kept for resume"


def test_long_errors_are_wrapped_never_cut():
    state = ProgressState()
    started(state)
    message = "a very long reason " * 12 + "END-OF-MESSAGE"
    state.apply(ev.ItemFailed(item="i2", message=message, hint="the hint says what to do " * 5 + "END-OF-HINT", error="X"))
    lines = state.log_lines(60)
    assert all(len(line) <= 60 for line in lines)
    text = " ".join(line.strip() for line in lines)
    assert "END-OF-MESSAGE" in text and "END-OF-HINT" in text
    assert lines[0].startswith("! https://h/x.safetensors:") and lines[1].startswith("  ")


def test_more_rows_than_room_keep_the_running_one_then_failures_and_the_newest_in_view():
    state = ProgressState()
    names = ["a", "b", "c", "d", "e"]  # one folder line of the form became five models
    state.apply(ev.PlanStarted(items=tuple(f"m{i}" for i in range(5)), labels=tuple(f"/models/folder/{n}.safetensors" for n in names),
                               total_bytes=-1))
    state.apply(ev.ItemStarted(item="m0", label="/models/folder/a.safetensors"))
    lines, first = state.status_view(80, 3)
    assert (len(lines), first) == (5, 0) and lines[0].startswith(">")  # the running one, at the top
    for i in range(1, 5):
        state.apply(ev.ItemRegistered(item=f"m{i - 1}", name=names[i - 1]))
        state.apply(ev.ItemStarted(item=f"m{i}", label=f"/models/folder/{names[i]}.safetensors"))
    lines, first = state.status_view(80, 3)
    assert any(line.startswith(">") and "e.safetensors" in line for line in lines[first:first + 3])  # still in view
    state.apply(ev.ItemFailed(item="m4", message="cannot read it", error="ProbeError"))
    state.apply(ev.PlanFinished(succeeded=4, failed=1))
    lines, first = state.status_view(80, 3)
    assert first == 0 and len(lines) == 3
    assert "3 more, every one in the log below" in lines[0]
    # the failure is never the one hidden; the rest of the room goes to the newest; in plan order
    assert lines[1].startswith("+") and "d.safetensors" in lines[1]
    assert lines[2].startswith("!") and "e.safetensors" in lines[2]
    state2 = ProgressState()
    state2.apply(ev.PlanStarted(items=tuple(f"m{i}" for i in range(5)), labels=tuple(f"/f/{n}" for n in names), total_bytes=-1))
    state2.apply(ev.ItemFailed(item="m0", message="broken", error="ProbeError"))
    for i in range(1, 5):
        state2.apply(ev.ItemRegistered(item=f"m{i}", name=names[i]))
    state2.apply(ev.PlanFinished(succeeded=4, failed=1))
    old_failure, _ = state2.status_view(80, 3)
    assert [line[0] for line in old_failure[1:]] == ["!", "+"] and "/f/a" in old_failure[1] and "/f/e" in old_failure[2]
    few, first = state.status_view(80, 10)
    assert (len(few), first) == (5, 0)  # room for all: nothing hidden
