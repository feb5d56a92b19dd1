import os
import signal

import pytest

from emocurate.executors.ray_runtime import GUARD_ENV, LOOPBACK_PROXY, RayGuardError, apply_guard, check_guard, is_loopback_proxy, restore

ray = pytest.importorskip("ray")


@pytest.mark.parametrize(
    "url,ok",
    [
        ("http://127.0.0.1:9", True),
        ("http://127.5.0.1:9", True),
        ("http://localhost:9", True),
        ("http://[::1]:9", True),
        ("http://10.0.0.1:3128", False),
        ("http://proxy.example.com:8080", False),
        ("https://127.0.0.1:9", False),
        ("", False),
        (None, False),
    ],
)
def test_is_loopback_proxy(url, ok):
    assert is_loopback_proxy(url) is ok


def test_check_guard_names_what_is_missing():
    with pytest.raises(RayGuardError, match="http_proxy=None"):
        check_guard({"HTTP_PROXY": LOOPBACK_PROXY, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    with pytest.raises(RayGuardError, match="RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):
        check_guard({"http_proxy": LOOPBACK_PROXY, "HTTP_PROXY": LOOPBACK_PROXY})
    with pytest.raises(RayGuardError, match="10.1.1.1"):
        check_guard({**GUARD_ENV, "HTTP_PROXY": "http://10.1.1.1:3128"})
    check_guard(GUARD_ENV)


def test_apply_guard_then_restore_leaves_env_as_it_was():
    env = {"http_proxy": "http://corp-proxy:3128", "PATH": "/bin"}
    previous = apply_guard(env)
    check_guard(env)
    restore(env, previous)
    assert env == {"http_proxy": "http://corp-proxy:3128", "PATH": "/bin"}


def test_unguarded_ray_init_fails_the_test_before_ray_starts(monkeypatch):
    # tests/conftest.py wraps ray.init: a test that starts Ray without the guard fails here, before any probe is sent.
    for key in GUARD_ENV:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RayGuardError):
        ray.init(num_cpus=1, include_dashboard=False)
    with pytest.raises(RayGuardError):  # Ray Data starts Ray by itself when nobody did: the same check applies
        from ray import data as ray_data

        ray_data.range(3).take_all()
    assert not ray.is_initialized()


def test_ray_session_runs_workers_behind_the_guard_and_restores_env(monkeypatch):
    from emocurate.executors.ray_runtime import ray_session

    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://corp-proxy:3128")

    @ray.remote
    def worker_view():
        return os.environ.get("http_proxy"), os.environ.get("HTTP_PROXY"), ray.util.get_node_ip_address()

    sigterm = signal.getsignal(signal.SIGTERM)
    with ray_session(num_cpus=1):
        http_proxy, HTTP_PROXY, node_ip = ray.get(worker_view.remote())
    assert signal.getsignal(signal.SIGTERM) is sigterm  # the process is left as it was found
    assert (http_proxy, HTTP_PROXY, node_ip) == (LOOPBACK_PROXY, LOOPBACK_PROXY, "127.0.0.1")
    assert not ray.is_initialized()
    assert "http_proxy" not in os.environ and os.environ["HTTP_PROXY"] == "http://corp-proxy:3128"
