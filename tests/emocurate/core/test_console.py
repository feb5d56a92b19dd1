import errno

import pytest

from emocurate.core.config import ConfigError
from emocurate.core.console import RichProgress, check_out_folder, describe, one_line


@pytest.mark.parametrize("err, code, text", [
    (ConfigError("recipe.yaml: line 3: not valid YAML"), 2, "recipe.yaml: line 3"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/y"), 2, "No such file or directory: /x/y"),
    (NotADirectoryError("--out f is not a folder: give a folder path"), 2, "--out f is not a folder"),
    (PermissionError(errno.EACCES, "Permission denied", "/ro/run"), 1, "Permission denied: /ro/run: choose a location"),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/run"), 1, "choose a location you can write to"),
    (OSError(errno.ENOSPC, "No space left on device", "/d"), 1, "free some space"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), 1, "cannot connect"),
    (ModuleNotFoundError("No module named 'ray'"), 1, "No module named 'ray': install the package"),
    (IndexError("list index out of range"), 1, "unexpected IndexError: list index out of range (a bug: rerun with --debug"),
])
def test_errors_map_to_one_line_and_an_exit_code(err, code, text):
    got_code, message = describe(err)
    assert got_code == code and text in message


def test_http_client_connection_errors_are_environment_errors():
    type_ = type("ConnectError", (Exception,), {"__module__": "httpx2._exceptions"})
    assert describe(type_("[Errno 111] Connection refused"))[0] == 1


def test_one_line_folds_a_listing():
    assert one_line("dataset has 2 problem(s):\n  1 empty captions\n  1 bad labels\n") == \
        "dataset has 2 problem(s): 1 empty captions; 1 bad labels"


def test_check_out_folder_refuses_files_and_creates_nothing(tmp_path):
    (tmp_path / "f").write_text("x")
    for out in (tmp_path / "f", tmp_path / "f" / "run"):
        with pytest.raises(NotADirectoryError, match="is not a folder"):
            check_out_folder(out)
    check_out_folder(tmp_path / "new" / "run")
    assert not (tmp_path / "new").exists()


def test_a_stage_with_nothing_left_shows_done():
    # a resumed, finished run reports total 0 for each stage: done, not a running clock with an unknown ETA
    bars = RichProgress()
    bars("classify", 0, 0)
    bars("caption", 0, 3)
    bars("caption", 3)
    bars("clip_score", 0, 3)
    state = {t.description: t.finished for t in bars.bars.tasks}
    assert state == {"classify": True, "caption": True, "clip_score": False}
