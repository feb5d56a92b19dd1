"""Outputs follow the user's umask (safetensors and tempfile.mkdtemp alone would leave them 0600 / 0700)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from emocurate.core.filemode import current_umask, follow_umask
from tests.helpers.umask import umask, wrong_modes


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_follow_umask_gives_files_and_folders_the_mode_open_would(tmp_path, mask):
    folder = tmp_path / "out"
    (folder / "sub").mkdir(parents=True)
    for p in (folder / "a.safetensors", folder / "sub" / "b.json"):
        p.write_bytes(b"x")
        p.chmod(0o600)
    (folder / "sub").chmod(0o700)
    (folder / "run.sh").write_text("#!/bin/sh\n")
    (folder / "run.sh").chmod(0o700)
    with umask(mask):
        assert current_umask() == mask
        follow_umask(folder)
    assert os.stat(folder / "run.sh").st_mode & 0o777 == 0o777 & ~mask  # executables stay executable
    (folder / "run.sh").unlink()
    assert wrong_modes(folder, mask) == {}


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_a_saved_probe_follows_the_umask(tmp_path, mask):
    from emocurate.stages.probe import Probe, save_probe

    d, k = 4, 2
    probe = Probe("some/clip", None, ("awe", "fear"), d, np.zeros((k, d)), np.zeros(k), np.zeros(d), np.ones(d))
    with umask(mask):
        save_probe(probe, tmp_path / "probe")
    assert wrong_modes(tmp_path / "probe", mask) == {}


def test_a_tiny_model_folder_follows_the_umask(tmp_path, monkeypatch):
    from emocurate.core.tiny import resolve

    monkeypatch.setenv("EMOCURATE_TINY_CACHE", str(tmp_path / "cache"))
    with umask(0o002):
        path = resolve("tiny:clip")
    assert any(p.suffix == ".safetensors" for p in (tmp_path / "cache" / "clip").iterdir())
    assert wrong_modes((tmp_path / "cache" / "clip"), 0o002) == {}, path
