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
