"""start_ray/stop_ray: Ray started by warmrec is stopped by it, and the environment is put back."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("ray")

from warmrec.tuning.cluster import start_ray, stop_ray  # noqa: E402

pytestmark = pytest.mark.xdist_group("ray")


def _ray_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("RAY_")}


def test_stop_ray_puts_back_the_environment_ray_init_changed(monkeypatch) -> None:
    import ray

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.setenv("RAY_WARMREC_TEST_KEPT", "1")  # set before: must survive
    before = _ray_env()
    env = start_ray(None, num_cpus=1)
    try:
        assert env == before
        assert ray.is_initialized()
        # already running: not this call's to start or stop
        assert start_ray(None, num_cpus=1) is None
        stop_ray(None)
        assert ray.is_initialized()
    finally:
        stop_ray(env)
    assert not ray.is_initialized()
    assert _ray_env() == before  # ray.init's RAY_AUTH_MODE=token (and the rest) removed


def test_start_ray_puts_back_the_environment_when_init_fails(monkeypatch) -> None:
    from warmrec.errors import ConfigError

    before = _ray_env()
    with pytest.raises(ConfigError, match="--address 127.0.0.1:1: no Ray cluster answers"):
        start_ray("127.0.0.1:1")
    assert _ray_env() == before
