"""Progress lines: rhythm, figures, the ambient `tick()`, and the terminal logger's filter."""

from __future__ import annotations

import logging

from mmoral_pipeline import progress
from mmoral_pipeline.progress import PROGRESS_MARK, Progress, duration


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_lines_follow_the_rhythm_with_rate_eta_and_counts() -> None:
    clock, lines = Clock(), []
    p = Progress("generation b1", 100, lines.append, unit="requests", every_s=10, clock=clock).start()
    assert lines == [f"{PROGRESS_MARK} generation b1: starting, 100 requests"]
    for _ in range(20):  # 20 requests in 5 s: no line yet (the rhythm is 10 s)
        clock.t += 0.25
        p.advance(cache_hits=1)
    assert len(lines) == 1
    for _ in range(20):  # 20 more in 5 s: one line at 10 s
        clock.t += 0.25
        p.advance(sent=1)
    assert len(lines) == 2
    assert (
        lines[1]
        == f"{PROGRESS_MARK} generation b1: 40/100 requests (40 %), 4.0 requests/s, ETA 15 s, cache hits 20, sent 20"
    )
    clock.t += 10
    p.advance(60)
    assert len(lines) == 2, "the last unit leaves the line to finish()"
    p.finish()
    assert lines[-1].endswith("100/100 requests (100 %), 5.0 requests/s, done in 20 s, cache hits 20, sent 20")


def test_other_work_keeps_the_lines_coming_after_the_last_unit() -> None:
    clock, lines = Clock(), []
    p = Progress("generation b1", 2, lines.append, unit="requests", every_s=10, clock=clock)
    p.advance(2)
    for _ in range(3):  # validating what came back: 30 s with no unit left to count
        clock.t += 10
        p.note(validated=1)
    assert len(lines) == 3 and lines[-1].endswith("2/2 requests (100 %), 0.1 requests/s, validated 3")
    progress.note(validated=1)  # nobody listens: nothing happens


def test_details_and_unknown_total() -> None:
    clock, lines = Clock(), []
    p = Progress("SFT", None, lines.append, unit="steps", every_s=0, details=lambda: "loss 0.5000", clock=clock)
    clock.t = 2
    p.advance(4)
    assert lines == [f"{PROGRESS_MARK} SFT: 4 steps, 2.0 steps/s, loss 0.5000"]


def test_tick_reports_to_the_context_and_is_silent_without_one() -> None:
    lines: list[str] = []
    progress.tick()  # nobody listens: nothing happens
    with progress.reporting(Progress("ingest b1", 3, lines.append, unit="images", every_s=0)) as p:
        progress.tick()
        progress.tick(rejected=1)
        assert progress.current() is p
    assert progress.current() is None
    assert p.done == 2 and p.counts == {"rejected": 1}
    assert lines[0].endswith("starting, 3 images") and "done in" in lines[-1]


def test_no_closing_line_when_the_work_fails() -> None:
    lines: list[str] = []
    try:
        with progress.reporting(Progress("x", 2, lines.append, every_s=0)):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert not any("done in" in line for line in lines)


def test_duration() -> None:
    assert (duration(4.4), duration(125), duration(3725)) == ("4 s", "2 min 05 s", "1 h 02 min")


def test_terminal_logger_keeps_progress_and_warnings(capsys) -> None:
    from mmoral_pipeline.defs.console import progress_console_logger

    logger = progress_console_logger.logger_fn(
        type("Init", (), {"logger_config": {"log_level": "WARNING", "progress": True}})()
    )
    logger.info("Started execution of step")
    logger.info(f"{PROGRESS_MARK} ingest b1: 5/10 images")
    logger.warning("a warning")
    err = capsys.readouterr().err
    assert "Started execution" not in err
    assert f"{PROGRESS_MARK} ingest b1: 5/10 images" in err and "WARNING a warning" in err
    assert logging.getLevelName("WARNING") == logging.WARNING
