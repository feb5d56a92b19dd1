"""Shared test setup: offline Hub, tiny models cached once per session in a temporary folder."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


@pytest.fixture(scope="session", autouse=True)
def tiny_cache(tmp_path_factory):
    """Every `tiny:NAME` model is built once per test session, in a folder of its own."""
    path = tmp_path_factory.mktemp("tiny-models")
    os.environ["EMOCURATE_TINY_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session", autouse=True)
def ray_loopback_guard():
    """Every Ray start in a test must carry the loopback guard (`emocurate.executors.ray_runtime`), or the test fails before Ray
    starts: unguarded, Ray probes the cloud-metadata address 169.254.169.254."""
    try:
        import ray
    except ImportError:
        yield
        return
    from emocurate.executors.ray_runtime import check_guard

    real_init = ray.init

    def guarded_init(*args, **kwargs):
        check_guard(os.environ)
        return real_init(*args, **kwargs)

    ray.init = guarded_init
    yield
    ray.init = real_init
