"""The thread policy: the CPUs a process may use less those other work keeps busy."""

from __future__ import annotations

import os

import pytest
import torch

from warmrec.training import threads as T


@pytest.mark.parametrize(
    ("cpus", "busy", "want"),
    [(2, 0.0, 2), (2, 0.4, 2), (2, 1.0, 1), (2, 4.0, 1), (16, 5.0, 11), (1, 0.0, 1)],
)
def test_policy_leaves_the_busy_cpus_to_other_work(monkeypatch, cpus, busy, want) -> None:
    monkeypatch.setattr(T, "usable_cpus", lambda: cpus)
    monkeypatch.setattr(T, "busy_cpus", lambda: busy)
    assert T.policy_threads() == want
    assert T.policy_threads(3) == 3  # asked for: given


def test_busy_cpus_excludes_this_process_and_caps_bursts(monkeypatch) -> None:
    monkeypatch.setattr(T, "_runnable_now", lambda: 1)  # only this process runs
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 3.0, 3.0))
    assert T.busy_cpus() == 0.0
    monkeypatch.setattr(T, "_runnable_now", lambda: 6)  # a burst above the load average
    assert T.busy_cpus() == 3.0
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    assert T.busy_cpus() == 5.0


def test_apply_sets_torch_threads_and_respects_omp_num_threads(monkeypatch) -> None:
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
        monkeypatch.setattr(T, "usable_cpus", lambda: 2)
        monkeypatch.setattr(T, "busy_cpus", lambda: 3.0)
        assert T.apply_threads() == 1 and torch.get_num_threads() == 1
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert T.apply_threads() == 2 and torch.get_num_threads() == 2  # the user's setting
        assert T.apply_threads(1) == 1  # --threads wins
    finally:
        torch.set_num_threads(before)


def test_a_task_runnable_for_an_instant_is_not_busy_work(monkeypatch) -> None:
    """procs_running is read several times and the least count kept: a shell or a sampler on a
    CPU at one reading does not take a thread from the run."""
    readings = iter([3, 1, 3, 3, 3])
    monkeypatch.setattr(T, "_runnable_now", lambda: next(readings))
    monkeypatch.setattr(T, "SAMPLE_GAP_S", 0.0)
    monkeypatch.setattr(T.os, "getloadavg", lambda: (2.0, 2.0, 2.0))
    assert T.busy_cpus() == 0.0
    readings = iter([5, 5, 4, 5, 5])  # four other tasks stay runnable
    monkeypatch.setattr(T, "_runnable_now", lambda: next(readings))
    assert T.busy_cpus() == 2.0  # capped by the load average


def test_a_run_records_the_thread_count_it_ran_with(monkeypatch) -> None:
    """``num_threads = 0`` lets the policy pick the count from the machine's load, and float
    results differ across counts: the run's trainer record names the count in force (0 there
    said nothing), so a run can be repeated bit for bit."""
    from tests.conftest import cyclic_log
    from warmrec import get_model, prepare

    for k in T.THREADS_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(T, "policy_threads", lambda requested=0: requested or 2)
    before = torch.get_num_threads()
    try:
        prep = prepare(cyclic_log(n_sessions=20, n_items=8, length=5), split="loo")
        model = get_model("sasrec", {"d": 8, "n_layers": 1, "max_len": 5})
        model.fit(prep.train, prep.valid, epochs=1, progress=False)
        assert model.train_result.trainer["num_threads"] == 2
        model.fit(prep.train, prep.valid, epochs=1, progress=False, num_threads=1)
        assert model.train_result.trainer["num_threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_runs_sharing_the_process_get_one_share_decided_once(monkeypatch) -> None:
    """Trials in threads of one process (``tune --n-jobs``): the count is measured once, when
    the runs start sharing, and split among them; every run with nothing requested gets that
    share from whatever thread it runs in, and torch is never set to another count."""
    from concurrent.futures import ThreadPoolExecutor

    for k in T.THREADS_ENV:
        monkeypatch.delenv(k, raising=False)
    measured = iter([2, 4, 6, 8, 10, 12])  # the machine's load changes between runs
    monkeypatch.setattr(T, "policy_threads", lambda requested=0: requested or next(measured))
    set_to: list[int] = []
    real_set = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (set_to.append(n), real_set(n))[1])
    before = torch.get_num_threads()
    try:
        with T.sharing(2) as share:
            assert share == 1 and T.shared_threads() == 1
            with ThreadPoolExecutor(4) as pool:  # Optuna's n_jobs workers
                got = list(pool.map(lambda _: T.apply_threads(0), range(8)))
            assert got == [1] * 8 and T.apply_threads() == 1
            assert set(set_to) <= {1}
            assert T.apply_threads(3) == 3  # --threads still wins
            with T.sharing(2) as inner:  # nested: the outer share is split, not re-measured
                assert inner == 1
            monkeypatch.setenv("OMP_NUM_THREADS", "3")
            torch.set_num_threads(3)
            assert T.apply_threads() == 3  # the user's setting is kept
            monkeypatch.delenv("OMP_NUM_THREADS")
            assert T.apply_threads() == 1
        assert T.shared_threads() is None and torch.get_num_threads() == before
        assert T.apply_threads() == 4  # outside: measured again
    finally:
        real_set(before)


def test_a_callers_set_num_threads_is_replaced_and_the_docs_say_so(monkeypatch) -> None:
    """Only ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` keep torch's count: an earlier
    ``torch.set_num_threads`` cannot be told from torch's default, so the policy replaces it,
    and the docs say that (they once claimed it was respected) and how to keep it instead."""
    from warmrec.training.loop import TrainerConfig

    for k in T.THREADS_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(T, "policy_threads", lambda requested=0: requested or 1)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # the caller's choice, e.g. in a notebook
        assert T.apply_threads() == 1 and torch.get_num_threads() == 1  # replaced
        torch.set_num_threads(2)
        assert T.apply_threads(torch.get_num_threads()) == 2  # passed: kept
    finally:
        torch.set_num_threads(before)
    doc = " ".join(T.__doc__.split())
    assert "``torch.set_num_threads`` by the caller is respected" not in doc
    assert "``torch.set_num_threads`` by the caller is *not* detected" in doc
    assert "num_threads=torch.get_num_threads()" in doc
    field_doc = " ".join(TrainerConfig.model_fields["num_threads"].description.split())
    assert "torch.set_num_threads`` is not" in field_doc
