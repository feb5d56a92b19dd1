"""The loopback fake Hub answers the calls other tests rely on: model repos, missing repos and folders, push_to_hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.fakehub import FakeHub

TOKEN = "hf_fakehubSelfTestToken000000000000"
CLIENT = r"""
import json, socket, sys, tempfile
from pathlib import Path

_getaddrinfo = socket.getaddrinfo
def _loopback_only(host, *args, **kwargs):
    if host not in ("127.0.0.1", b"127.0.0.1", "localhost"):
        raise OSError(f"test guard: refusing to resolve {host!r}")
    return _getaddrinfo(host, *args, **kwargs)
socket.getaddrinfo = _loopback_only

from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

api, out = HfApi(), {}
try:
    api.repo_info("user/missing")
except RepositoryNotFoundError:
    out["missing_repo"] = "RepositoryNotFoundError"
folder = Path(tempfile.mkdtemp())
(folder / "weights").mkdir()
(folder / "weights" / "adapter.safetensors").write_bytes(b"\x00" * 5000)
(folder / "config.json").write_text('{"rank": 4}')
out["url"] = str(api.create_repo("user/model", exist_ok=True))
api.upload_folder(folder_path=folder, repo_id="user/model")
out["config"] = Path(hf_hub_download("user/model", "config.json")).read_text()
out["weights"] = len(Path(hf_hub_download("user/model", "weights/adapter.safetensors")).read_bytes())
out["tree"] = sorted(f.path for f in api.list_repo_tree("user/model", recursive=True))
try:
    list(api.list_repo_tree("user/model", path_in_repo="nope"))
except EntryNotFoundError:
    out["missing_folder"] = "EntryNotFoundError"

from huggingface_hub import HfFileSystem
with HfFileSystem().open("user/model/weights/adapter.safetensors", "rb", block_size=64) as f:
    f.seek(100)
    out["range_read"] = len(f.read(50))

import datasets
datasets.config.USE_PARQUET_EXPORT = False
ds = datasets.Dataset.from_dict({"x": [1, 2, 3], "y": ["a", "b", "c"]},
                                features=datasets.Features({"x": datasets.Value("int64"),
                                                            "y": datasets.ClassLabel(names=["a", "b", "c"])}))
ds.push_to_hub("user/pushed")
back = datasets.load_dataset("user/pushed", split="train")
out["pushed"] = back.to_dict()
out["pushed_features"] = back.features.to_dict()
out["streamed"] = [r["x"] for r in datasets.load_dataset("user/pushed", split="train", streaming=True)]
print(json.dumps(out))
"""


def test_fake_hub_serves_model_repos_missing_entries_and_push_to_hub(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_TOKEN")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    with FakeHub() as hub:
        env.update(hub.env(TOKEN))
        proc = subprocess.run([sys.executable, "-c", CLIENT], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-4000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert ("model", "user/model") in hub.repos and ("dataset", "user/pushed") in hub.repos
        assert hub.repos[("model", "user/model")].lfs_paths == {"weights/adapter.safetensors"}
        assert not hub.errors and f"Bearer {TOKEN}" in hub.auth_headers
        assert any(method == "GET" and "/resolve/" in path for method, path in hub.requests)
        assert hub.range_requests  # HfFileSystem and streaming read byte ranges
    assert out["missing_repo"] == "RepositoryNotFoundError" and out["missing_folder"] == "EntryNotFoundError"
    assert out["url"] == f"{hub.url}/user/model"
    assert out["config"] == '{"rank": 4}' and out["weights"] == 5000 and out["range_read"] == 50
    assert out["tree"] == ["config.json", "weights", "weights/adapter.safetensors"]
    assert out["pushed"] == {"x": [1, 2, 3], "y": [0, 1, 2]} and out["streamed"] == [1, 2, 3]
    assert out["pushed_features"]["y"] == {"names": ["a", "b", "c"], "_type": "ClassLabel"}
