"""Progress shows by default on a terminal, also on a pseudo-terminal that reports 0x0 (as
``script``, ``expect`` and some CI runners open them: tqdm then hid every bar)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
from tests.conftest import split_cyclic, tiny_net
from warmrec import get_model
tr, va = split_cyclic(60, n_items=12, length=6, seed=2, n_train=50, last_only=True)
get_model("sasrec", tiny_net("sasrec")).fit(tr, va, epochs=2)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="pseudo-terminals as on Linux")
def test_training_shows_a_bar_on_a_terminal_without_a_size() -> None:
    master, slave = pty.openpty()  # a new pty has a window size of 0x0
    assert os.get_terminal_size(slave) == (0, 0)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stderr=slave, stdout=subprocess.DEVNULL, env=env, cwd=ROOT
    )
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(timeout=120) == 0
    os.close(master)
    text = out.decode("utf-8", "replace")
    assert "train sasrec" in text and "2/2" in text, text[-2000:]


# -- StepProgress: a loop counted in steps (multi-source pre-training) ---------------------------
def test_step_progress_prints_a_line_per_tenth_of_the_steps_in_a_log(capsys) -> None:
    from warmrec.training.loop import epoch_lines
    from warmrec.training.progress import StepProgress

    with epoch_lines():
        p = StepProgress(40, None, "pretrain-multi")
        for i in range(40):
            p.step({"a": 1.0 / (i + 1), "b": 2.0}, seconds=0.5 * (i + 1))
        p.close({"a": 0.025, "b": 2.0}, 20.0, taken=40)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10  # steps 4, 8, ..., 40; the close adds none (step 40 said it)
    assert lines[0] == "pretrain-multi: step 4/40, loss a 0.2500, b 2.0000, 2.0 s"
    assert lines[-1] == "pretrain-multi: step 40/40, loss a 0.0250, b 2.0000, 20.0 s"


def test_step_progress_says_when_a_time_budget_cut_the_steps(capsys) -> None:
    from warmrec.training.loop import epoch_lines
    from warmrec.training.progress import StepProgress

    with epoch_lines():
        p = StepProgress(100, None, "pretrain-multi")
        for _ in range(13):
            p.step({"a": 3.0}, seconds=1.0)
        p.close({"a": 3.0}, 13.0, taken=13)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "pretrain-multi: step 10/100, loss a 3.0000, 1.0 s",
        "pretrain-multi: 13 of 100 steps taken (time budget), loss a 3.0000, 13.0 s",
    ]


def test_step_progress_is_silent_outside_the_log_mode_and_when_turned_off(capsys) -> None:
    from warmrec.training.loop import epoch_lines
    from warmrec.training.progress import StepProgress

    for ctx, progress in ((False, None), (True, False)):
        with epoch_lines(ctx):
            p = StepProgress(20, progress, "pretrain-multi")
            for _ in range(20):
                p.step({"a": 1.0}, seconds=1.0)
            p.close({"a": 1.0}, 20.0, taken=20)
    assert capsys.readouterr().err == ""


def test_step_progress_draws_a_bar_when_asked(capsys) -> None:
    from warmrec.training.progress import StepProgress

    p = StepProgress(200, True, "pretrain-multi")
    for _ in range(200):
        p.step({"a": 1.5}, seconds=1.0)
    p.close({"a": 1.5}, 2.0, taken=200)
    err = capsys.readouterr().err
    assert "pretrain-multi" in err and "200/200" in err and "a=1.5000" in err
