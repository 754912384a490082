"""Progress where cluster and container users look (issue 24): plain lines at a steady pace when stderr is
not a terminal, in one grammar (sngan/training/progress.py), and a copy of everything in train.log."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time

import pytest

from sngan.cli.log_file import Copied, copied_to
from sngan.training.progress import Progress

LINE = re.compile(
    r"^step (\d+)/(\d+) (\d+)% \| [0-9.e+]+ it/s \| eta (\d+h\d\dm|\d+m\d\ds)"
    r"( \| loss/d=\S+ loss/g=\S+( augment/p=\S+)?( augment/rt=\S+)?)?( \| \S+=\S+ @\d+)?$"
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_plain_lines_come_at_log_steps_but_at_most_every_5_s_and_at_least_every_30_s():
    out, clock = io.StringIO(), Clock()
    progress = Progress(total=1000, start=0, shown=True, stream=out, clock=clock)
    for step in range(1, 5):  # a log step every second: too soon
        clock.now = step
        progress.update(step, log_due=True)
    assert lines(out) == []
    clock.now = 5.0
    progress.update(5, log_due=True)
    assert len(lines(out)) == 1 and lines(out)[0].startswith("step 5/1000 0% | 1 it/s | eta 16m35s")
    clock.now = 34.0  # no log step for 29 s: nothing; at 30 s a line anyway
    progress.update(6, log_due=False)
    clock.now = 35.0
    progress.update(7, log_due=False)
    assert len(lines(out)) == 2
    clock.now = 36.0
    progress.update(1000, log_due=False)  # the last step always
    assert len(lines(out)) == 3 and lines(out)[-1].startswith("step 1000/1000 100%")
    assert all(LINE.match(line) for line in lines(out)), lines(out)


def test_lines_carry_the_losses_and_the_latest_evaluation_and_events_print_once():
    out, clock = io.StringIO(), Clock()
    progress = Progress(total=100, start=40, shown=True, stream=out, clock=clock)
    progress.losses_are({"loss/d": 1.25, "loss/g": -0.5, "d_out/real": 3.0})
    progress.scored({"synthetic/quality": 0.5, "ema/synthetic/quality": 0.875, "ema/synthetic/modes_covered": 9}, 50)
    progress.saved("run/checkpoints/ckpt_00000050.pt", 50)
    clock.now = 10.0
    progress.update(60, log_due=True)
    eval_line, ckpt_line, line = lines(out)
    assert eval_line.startswith("eval step 50: ") and "ema/synthetic/modes_covered=9" in eval_line
    assert ckpt_line == "checkpoint step 50: run/checkpoints/ckpt_00000050.pt"
    assert line == "step 60/100 60% | 2 it/s | eta 0m20s | loss/d=1.25 loss/g=-0.5 | ema/synthetic/quality=0.875 @50"
    assert LINE.match(line)
    progress.scored({"fid_paper/fid": 30.0, "ema/fid_paper/fid": 25.0, "ema/synthetic/quality": 0.9}, 70)
    clock.now = 20.0
    progress.update(80, log_due=True)
    assert lines(out)[-1].endswith("| ema/fid_paper/fid=25 @70")  # FID first, the EMA's first


def test_other_ranks_print_nothing():
    out, clock = io.StringIO(), Clock()
    progress = Progress(total=10, start=0, shown=False, stream=out, clock=clock)
    progress.scored({"fid_paper/fid": 1.0}, 5)
    clock.now = 100.0
    progress.update(10, log_due=True)
    assert out.getvalue() == ""


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_bar_stays_and_train_log_gets_the_plain_line():
    terminal, log, clock = Terminal(), io.StringIO(), Clock()
    progress = Progress(total=10, start=0, shown=True, stream=Copied(terminal, log), clock=clock)
    progress.losses_are({"loss/d": 1.0, "loss/g": 2.0})
    clock.now = 6.0
    progress.update(5, log_due=True)
    progress.close()
    assert "\r" in terminal.getvalue() and not LINE.search(terminal.getvalue().replace("\r", "\n"))  # a bar
    assert [line for line in lines(log) if LINE.match(line)] == [
        "step 5/10 50% | 0.833 it/s | eta 0m06s | loss/d=1 loss/g=2"
    ]
    assert "\r" not in log.getvalue()


def test_train_log_gets_notes_warnings_errors_and_a_crashs_traceback(tmp_path, capsys):
    log = tmp_path / "run" / "train.log"
    with pytest.raises(ZeroDivisionError), copied_to(log):
        print("note: a note")
        print("error: a one-paragraph error", file=sys.stderr)
        print("warning: sngan's own warning", file=sys.stderr)
        print("\r 40%|####      | redrawn bar", file=sys.stderr)  # the terminal's, not the file's
        1 / 0  # noqa: B018
    text = log.read_text()
    for line in ("note: a note", "error: a one-paragraph error", "warning: sngan's own", "Traceback (most recent",
                 "ZeroDivisionError: division by zero"):  # fmt: skip
        assert line in text, (line, text)
    assert "redrawn bar" not in text and "redrawn bar" in capsys.readouterr().err
    assert not isinstance(sys.stderr, Copied)  # put back after the crash
    with copied_to(log):  # a resumed run appends
        print("after the resume")
    assert log.read_text().startswith(text) and log.read_text().endswith("after the resume\n")


@pytest.mark.slow
def test_a_piped_run_prints_progress_while_it_trains_and_keeps_it_in_train_log(tmp_path):
    """The real command with stderr a pipe (as under sbatch, nohup, docker logs): progress lines arrive while
    the run trains, not only at its end, and train.log holds everything it printed."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "sngan.train", "experiment=quickstart", "model.width=0.0625",
           "train.batch_size_d=8", "train.batch_size_g=8", "train.steps=100000", "train.log_every=10",
           "train.max_minutes=0.25", "train.eval_every=100000", "train.sample_every=100000",
           f"hydra.run.dir={run_dir}"]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, bufsize=1)
    first_at, seen = None, []
    started = time.monotonic()
    for line in proc.stderr:
        seen.append(line.rstrip("\n"))
        if first_at is None and LINE.match(seen[-1]):
            first_at = time.monotonic() - started
            assert proc.poll() is None, "the first progress line came only after the run ended"
    assert proc.wait(timeout=120) == 0, "\n".join(seen[-20:])
    progress = [line for line in seen if LINE.match(line)]
    assert first_at is not None and len(progress) >= 2, seen
    log = (run_dir / "train.log").read_text().splitlines()
    assert [line for line in log if LINE.match(line)] == progress
    assert any(line.startswith("checkpoint step ") for line in log)
    assert log[-1].startswith("Training stopped at train.max_minutes=0.25") and log[-1] == seen[-1]  # the stop too
