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
