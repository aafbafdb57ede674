"""glibc's allocator settings for training (warmrec.training.memory)."""

from __future__ import annotations

import platform

import pytest

from warmrec import get_model
from warmrec.training import loop, memory


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="needs glibc"
)
def test_keep_freed_memory_sets_glibc_thresholds_once(monkeypatch):
    monkeypatch.setattr(memory, "_done", None)
    assert memory.keep_freed_memory() is True
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda *a: pytest.fail("mallopt called twice"))
    assert memory.keep_freed_memory() is True


def test_keep_freed_memory_does_nothing_off_glibc(monkeypatch):
    monkeypatch.setattr(memory, "_done", None)
    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("", ""))
    assert memory.keep_freed_memory() is False


@pytest.mark.parametrize("reuse", [True, False])
def test_train_applies_the_setting_only_when_asked(monkeypatch, cyclic_split, reuse):
    calls = []
    monkeypatch.setattr(loop, "keep_freed_memory", lambda: calls.append(1) or True)
    train, _ = cyclic_split
    model = get_model("gru4rec", {"hidden_size": 8, "max_len": 5})
    loop.train(model, train, None, epochs=1, batch_size=64, reuse_memory=reuse, progress=False)
    assert calls == ([1] if reuse else [])


def test_peak_rss_mb_sees_a_large_allocation() -> None:
    import numpy as np

    from warmrec.training.memory import peak_rss_mb

    before = peak_rss_mb()
    block = np.ones(300 * 2**20 // 8)  # 300 MiB, every page touched
    after = peak_rss_mb()
    del block
    assert after >= before  # a peak never goes down
    assert after >= 250  # the block itself is resident at this point
