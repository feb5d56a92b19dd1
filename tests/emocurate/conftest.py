"""Fixtures for the curation tests: an image folder with labelled, unlabelled, odd and bad files."""

import pytest

from tests.helpers.images import bad_files, jpeg, odd_modes, write_mixed_inputs


@pytest.fixture
def image_folder(tmp_path):
    """A folder source: emotion dirs (labelled), an unlabelled dir, a duplicate, odd modes and bad files."""
    root = tmp_path / "images"
    files = {
        "amusement/a1.jpg": jpeg(1), "amusement/a2.jpg": jpeg(2), "Fear/f1.jpg": jpeg(3),
        "misc/x1.jpg": jpeg(4), "misc/x2.jpg": jpeg(5), "misc/deeper/x3.jpg": jpeg(6),
        "misc/copy_of_a1.jpg": jpeg(1), "top.jpg": jpeg(7), ".hidden.jpg": jpeg(8),
        **{f"odd/{k}": v for k, v in odd_modes().items()},
        **{f"bad/{k}": v for k, v in bad_files().items()},
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Nine files in three shards (`mixed_input_overrides`): labelled and unlabelled photos, a byte-identical copy, a
    bad file. One folder per test module."""
    return write_mixed_inputs(tmp_path_factory.mktemp("mixed-inputs"))
