"""write_dataset writes a folder that `datasets` loads with the published features, and a card with its figures;
push uploads it to a loopback fake Hub from which `load_dataset("user/name")` returns the same rows."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from emocurate.core.decode import sha256_hex
from emocurate.core.emotions import EMOTIONS as EMOTIONS8
from emocurate.publish.dataset import Provenance, PublishConfig, PublishError, push, write_dataset
from tests.helpers.paths import REPO

EMOTIONS = ("amusement", "awe", "sadness")
REPO_ROOT = REPO
CAPTIONS = {
    "amusement": "A clown juggles bright balloons at a sunny fair, and the playful chaos evokes amusement.",
    "awe": "A vast mountain range glows under a starry sky | its scale evokes awe.",
    "sadness": "A lone bench sits in cold rain beside an empty grey street, evoking quiet sadness and loss.",
}


def _image_bytes(i: int, fmt: str) -> bytes:
    rng = np.random.default_rng(i)
    pixels = (rng.random((20 + i % 5, 24, 3)) * 255).astype("uint8")  # (H, W, 3)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def synthetic_run(n: int = 18):
    """(kept, records): n kept rows over three emotions (JPEG and PNG), plus classify and CLIP-filter drops."""
    kept_rows, record_rows = [], []
    for i in range(n):
        emotion = EMOTIONS[i % 3]
        data = _image_bytes(i, "JPEG" if i % 2 else "PNG")
        sha = sha256_hex(data)
        row = dict(image_bytes=data, sha256=sha, emotion=emotion, caption=f"{CAPTIONS[emotion]} Variant {i}.",
                   emotion_confidence=0.8 + 0.01 * i, clip_score=0.25 + 0.005 * i, source="folder:/photos",
                   source_id=f"img_{i}.{'jpg' if i % 2 else 'png'}", width=24, height=20 + i % 5,
                   artist=None if i % 4 == 0 else f"artist {i}")
        kept_rows.append(row)
        record_rows.append(dict(id=sha, source=row["source"], status="kept", dropped_by=None, reason=None, emotion=emotion,
                                emotion_confidence=row["emotion_confidence"], clip_score=row["clip_score"]))
    for i in range(6):  # the CLIP filter dropped the lowest scores of each emotion
        record_rows.append(dict(id=f"clip{i}", source="folder:/photos", status="dropped", dropped_by="clip_filter",
                                reason="clip_score below the emotion's 20% quantile", emotion=EMOTIONS[i % 3],
                                emotion_confidence=0.9, clip_score=0.1 + 0.01 * i))
    for i in range(4):
        record_rows.append(dict(id=f"cls{i}", source="folder:/photos", status="dropped", dropped_by="classify",
                                reason="confidence 0.41 < 0.75", emotion="fear", emotion_confidence=0.41, clip_score=None))
    record_rows.append(dict(id="bad", source="folder:/photos", status="dropped", dropped_by="ingest",
                            reason="not_an_image: content is not a decodable image", emotion=None,
                            emotion_confidence=None, clip_score=None))
    return pa.Table.from_pylist(kept_rows), pa.Table.from_pylist(record_rows)


PROVENANCE = Provenance(
    models={"classify": {"backend": "clip-zeroshot", "model": "tiny:clip", "revision": "abc123", "emotions": list(EMOTIONS8)},
            "caption": {"backend": "transformers", "model": "Qwen/Qwen2.5-VL-3B-Instruct", "revision": None},
            "clip_score": {"backend": "transformers", "model": "openai/clip-vit-large-patch14", "revision": "32bd6421"}},
    prompt="The image evokes {emotion}. Describe it in one sentence.",
    thresholds={"classify.min_confidence": 0.75},
    drop_fraction=0.2, seed=1234,
    recipe={"emotions": list(EMOTIONS), "caption": {"backend": "openai", "api_key_env": "MY_KEY", "api_key": "sk-oops"}},
    notes=["demo: random tiny models, captions are noise", "--ignore-robots was used"],
    status_counts={"ok": 18, "http_error": 3, "robots_disallowed": 2},
)
STAGE_COUNTS = {"ingest": {"amusement": 8, "awe": 8, "sadness": 8, None: 1}, "classify": {e: 8 for e in EMOTIONS},
                "caption": {e: 8 for e in EMOTIONS}, "clip_filter": {e: 6 for e in EMOTIONS}}


CONFIG = dict(pretty_name="Test emotions", license="other", license_note="unknown, (c) original authors",
              license_name="wikiart-terms", source_datasets=["huggan/wikiart"], tags=["emotion"], rows_per_shard=7,
              samples_per_emotion=4)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    kept, records = synthetic_run()
    out = tmp_path_factory.mktemp("run") / "dataset"
    cfg = PublishConfig(**CONFIG)
    assert write_dataset(kept, records, out, EMOTIONS, cfg, PROVENANCE, STAGE_COUNTS) == out
    return kept, records, out


def test_load_dataset_reads_the_published_features(written):
    from datasets import ClassLabel, Image as ImageFeature, load_dataset

    kept, _, out = written
    shards = sorted(p.name for p in (out / "data").iterdir())
    assert shards == [f"train-0000{i}-of-00003.parquet" for i in range(3)]  # 18 rows, 7 per shard
    ds = load_dataset(str(out), split="train")
    assert ds.num_rows == kept.num_rows
    assert ds.column_names == ["image", "emotion", "polarity", "caption", "emotion_confidence", "clip_score", "source",
                               "source_id", "artist", "sha256", "width", "height"]
    assert isinstance(ds.features["image"], ImageFeature)
    assert ds.features["emotion"] == ClassLabel(names=list(EMOTIONS))
    assert ds.features["polarity"] == ClassLabel(names=["positive", "negative"])
    by_sha = {r["sha256"]: r for r in kept.to_pylist()}
    for row in ds:
        src = by_sha[row["sha256"]]
        assert ds.features["emotion"].int2str(row["emotion"]) == src["emotion"]
        assert ds.features["polarity"].int2str(row["polarity"]) == ("negative" if src["emotion"] == "sadness" else "positive")
        assert row["caption"] == src["caption"] and row["artist"] == src["artist"]
        assert (row["width"], row["height"]) == row["image"].size == (src["width"], src["height"])
        original = Image.open(io.BytesIO(src["image_bytes"])).convert("RGB")
        assert np.array_equal(np.asarray(row["image"].convert("RGB")), np.asarray(original))
    raw = pq.read_table(out / "data" / shards[0])
    assert b"huggingface" in raw.schema.metadata  # features travel with each shard, not only in the card
    assert raw["image"].combine_chunks().field("bytes")[0].as_py() in {r["image_bytes"] for r in kept.to_pylist()}


def _card(out: Path) -> tuple[dict, str]:
    text = (out / "README.md").read_text()
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", text, re.S)
    assert match, "card must start with a YAML block"
    return yaml.safe_load(match.group(1)), match.group(2)


def test_card_metadata_provenance_and_counts(written):
    _, _, out = written
    meta, body = _card(out)
    assert meta["license"] == "other" and meta["license_name"] == "wikiart-terms" and "license_link" not in meta
    assert meta["pretty_name"] == "Test emotions"
    assert meta["size_categories"] == ["n<1K"]
    assert meta["task_categories"] == ["text-to-image", "image-classification"]
    assert meta["source_datasets"] == ["huggan/wikiart"] and "emotion" in meta["tags"]
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    assert meta["dataset_info"]["splits"] == [{"name": "train", "num_bytes": meta["dataset_info"]["splits"][0]["num_bytes"],
                                               "num_examples": 18}]
    for stage, model in PROVENANCE.models.items():
        assert model["model"] in body and stage in body
    assert "abc123" in body and "32bd6421" in body and "not pinned" in body
    assert PROVENANCE.prompt in body
    assert "| classify.min_confidence | 0.75 |" in body and "| clip_filter.drop_fraction | 0.2 |" in body
    assert "| seed | 1234 |" in body
    assert "demo: random tiny models, captions are noise" in body and "--ignore-robots was used" in body
    assert "| robots_disallowed | 2 |" in body and "| http_error | 3 |" in body
    assert "| emotion | ingest | classify | caption | clip_filter |" in body
    assert "| awe | 8 | 8 | 8 | 6 |" in body and "| (no label) | 1 | 0 | 0 | 0 |" in body
    assert "| clip_filter | 6 |" in body and "| classify | 4 |" in body and "| ingest | 1 |" in body
    assert "sk-oops" not in body and "api_key: <redacted>" in body and "api_key_env: MY_KEY" in body
    assert "unknown, (c) original authors" in body
    assert "keeps images whose top emotion has confidence >= 0.75" in body
    # the classifier's own classes decide; the dataset keeps a subset (EmoArt: 8 scored, 6 kept)
    assert " ".join(body.split()).count(f"The classifier scores all of its 8 classes ({', '.join(EMOTIONS8)})") == 1
    assert "(`emotion_not_kept`)" in body


def test_every_figure_is_a_png_linked_from_the_card(written):
    _, _, out = written
    _, body = _card(out)
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", body)
    expected = {"figures/emotion_distribution.png", "figures/clip_scores.png", "figures/top_words.png",
                *(f"figures/samples_{e}.png" for e in EMOTIONS)}
    assert set(links) == expected
    assert {p.relative_to(out).as_posix() for p in (out / "figures").iterdir()} == expected
    for link in links:
        with Image.open(out / link) as img:
            assert img.format == "PNG" and min(img.size) > 100


def test_republish_images_false_refuses_and_writes_nothing(tmp_path):
    kept, records = synthetic_run(3)
    cfg = PublishConfig(pretty_name="EmoSet captions", republish_images=False)
    with pytest.raises(PublishError, match="republish_images=false.*EmoSet"):
        write_dataset(kept, records, tmp_path / "dataset", EMOTIONS, cfg, PROVENANCE, STAGE_COUNTS)
    assert list(tmp_path.iterdir()) == []


def test_bad_input_is_a_clear_error_and_leaves_no_folder(tmp_path):
    kept, records = synthetic_run(3)
    cfg = PublishConfig(pretty_name="x")
    with pytest.raises(PublishError, match="outside this dataset's emotions"):
        write_dataset(kept, records, tmp_path / "d", ("amusement", "awe"), cfg, PROVENANCE, STAGE_COUNTS)
    with pytest.raises(PublishError, match="lacks column"):
        write_dataset(kept.drop_columns(["caption"]), records, tmp_path / "d", EMOTIONS, cfg, PROVENANCE, STAGE_COUNTS)
    with pytest.raises(PublishError, match="no rows were kept"):
        write_dataset(kept.slice(0, 0), records, tmp_path / "d", EMOTIONS, cfg, PROVENANCE, STAGE_COUNTS)
    bad = kept.set_column(0, "image_bytes", pa.array([b"not an image"] * 3, pa.binary()))
    with pytest.raises(PublishError, match="not an image"):
        write_dataset(bad, records, tmp_path / "d", EMOTIONS, cfg, PROVENANCE, STAGE_COUNTS)
    with pytest.raises(ValueError, match="rows_per_shard must be >= 1"):
        PublishConfig(pretty_name="x", rows_per_shard=0)
    assert list(tmp_path.iterdir()) == []  # no half-written dataset, no tmp folder left behind
    run = tmp_path / "run"  # e.g. the run folder passed by mistake: never replaced
    run.mkdir()
    (run / "records.parquet").write_bytes(b"precious")
    with pytest.raises(PublishError, match="not a dataset folder written by emocurate"):
        write_dataset(kept, records, run, EMOTIONS, cfg, PROVENANCE, STAGE_COUNTS)
    assert (run / "records.parquet").read_bytes() == b"precious"


def test_secret_in_notes_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "s3cr3t-value-123")
    kept, records = synthetic_run(3)
    prov = Provenance(**{**PROVENANCE.__dict__, "notes": ["endpoint key s3cr3t-value-123"]})
    with pytest.raises(ValueError, match="MY_SERVICE_TOKEN"):
        write_dataset(kept, records, tmp_path / "d", EMOTIONS, PublishConfig(pretty_name="x"), prov, STAGE_COUNTS)
    assert list(tmp_path.iterdir()) == []


def test_rewrite_replaces_the_old_dataset(written, tmp_path):
    kept, records, _ = written
    out = tmp_path / "dataset"
    cfg = PublishConfig(pretty_name="x", samples_per_emotion=0)
    write_dataset(kept, records, out, EMOTIONS, cfg, PROVENANCE, STAGE_COUNTS)
    (out / "stale.txt").write_text("from the old run")
    write_dataset(kept.slice(0, 5), records, out, EMOTIONS, cfg, PROVENANCE, STAGE_COUNTS)
    assert not (out / "stale.txt").exists()
    assert sum(pq.read_metadata(p).num_rows for p in (out / "data").glob("*.parquet")) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]


TOKEN = "hf_fakeTOKENforLoopbackTests0123456789"
PUSH_AND_LOAD = r"""
import json, socket, sys
from pathlib import Path

_getaddrinfo = socket.getaddrinfo
def _loopback_only(host, *args, **kwargs):  # this process may talk to the fake hub and nothing else
    if host not in ("127.0.0.1", b"127.0.0.1", "localhost"):
        raise OSError(f"test guard: refusing to resolve {host!r}")
    return _getaddrinfo(host, *args, **kwargs)
socket.getaddrinfo = _loopback_only

from emocurate.publish.dataset import push
url = push(Path(sys.argv[1]), sys.argv[2], private=True)
url_again = push(Path(sys.argv[1]), sys.argv[2])  # the repo exists now: exist_ok, a second commit

import datasets
datasets.config.USE_PARQUET_EXPORT = False  # else it asks datasets-server.<endpoint host> for exported infos
ds = datasets.load_dataset(sys.argv[2], split="train")
rows = [{k: v for k, v in r.items() if k != "image"} | {"image_bytes": r["image"]["bytes"].hex()}
        for r in ds.cast_column("image", datasets.Image(decode=False))]
print(json.dumps({"url": url, "url_again": url_again, "features": ds.features.to_dict(), "rows": rows}))
"""


def _rows(ds) -> tuple[dict, list[dict]]:
    from datasets import Image as ImageFeature

    rows = [{k: v for k, v in r.items() if k != "image"} | {"image_bytes": r["image"]["bytes"].hex()}
            for r in ds.cast_column("image", ImageFeature(decode=False))]
    return ds.features.to_dict(), rows


def test_push_then_load_dataset_from_the_fake_hub_returns_the_same_rows(written, tmp_path):
    from datasets import load_dataset

    from tests.helpers.fakehub import FakeHub

    _, _, out = written
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_TOKEN")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), PYTHONPATH=str(REPO_ROOT))
    with FakeHub() as hub:
        env.update(hub.env(TOKEN))
        proc = subprocess.run([sys.executable, "-c", PUSH_AND_LOAD, str(out), "user/emo-test"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-4000:]
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        uploaded = hub.files("user/emo-test")
        repo = hub.repos[("dataset", "user/emo-test")]
        auth = set(hub.auth_headers)
        assert not hub.errors
    assert result["url"] == result["url_again"] == f"{hub.url}/datasets/user/emo-test"
    assert repo.private and len(repo.commits) == 3  # init + two uploads
    local_files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert uploaded == local_files  # every file, byte for byte, nothing else
    assert {p for p in repo.lfs_paths} == {p for p in local_files if p.endswith((".parquet", ".png"))}
    assert all(TOKEN.encode() not in data for data in uploaded.values())
    assert f"Bearer {TOKEN}" in auth  # the token came from HF_TOKEN in the environment
    assert TOKEN not in proc.stdout + proc.stderr  # and was never printed or logged
    features, rows = _rows(load_dataset(str(out), split="train"))
    assert result["features"] == features
    assert result["rows"] == rows


def test_push_without_a_token_says_how_to_log_in(written, tmp_path, monkeypatch):
    from huggingface_hub import constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(PublishError, match="hf auth login.*HF_TOKEN"):
        push(written[2], "user/emo-test")
    with pytest.raises(PublishError, match="not a complete dataset folder"):
        push(tmp_path, "user/emo-test", token=TOKEN)
    with pytest.raises(PublishError, match="user/name"):
        push(written[2], "not a repo id", token=TOKEN)


def test_output_does_not_depend_on_row_order_or_arrow_string_types(written, tmp_path):
    kept, records, out = written
    shuffled = kept.take(list(range(kept.num_rows))[::-1])
    shuffled = shuffled.cast(pa.schema([pa.field(f.name, pa.large_binary() if f.name == "image_bytes" else
                                                 pa.large_string() if pa.types.is_string(f.type) else f.type)
                                        for f in shuffled.schema]))
    cfg = PublishConfig(**CONFIG)
    again = write_dataset(shuffled, records, tmp_path / "dataset", EMOTIONS, cfg, PROVENANCE, STAGE_COUNTS)
    files = lambda d: {p.relative_to(d).as_posix(): p.read_bytes() for p in d.rglob("*") if p.is_file()}  # noqa: E731
    assert files(again) == files(out)  # same parquet bytes, same figures, same card


def test_an_emotion_without_rows_still_gets_a_card(tmp_path):
    from datasets import load_dataset

    kept, records = synthetic_run(6)
    emotions = (*EMOTIONS, "fear")
    out = write_dataset(kept, records, tmp_path / "d", emotions, PublishConfig(pretty_name="x"), PROVENANCE, STAGE_COUNTS)
    assert load_dataset(str(out), split="train").features["emotion"].names == ["amusement", "awe", "fear", "sadness"]
    _, body = _card(out)
    assert "| fear | 0 | 0 | - |" in body and not (out / "figures" / "samples_fear.png").exists()


def test_publish_config_loads_from_a_recipe_section_and_rejects_bad_values():
    from emocurate.core.config import ConfigError, from_dict

    cfg = from_dict(PublishConfig, {"pretty_name": "WikiArt emotions", "license_note": "unknown, (c) original authors",
                                    "source_datasets": ["huggan/wikiart"], "republish_images": False})
    assert cfg.license == "other" and cfg.source_datasets == ["huggan/wikiart"] and not cfg.republish_images
    for bad, message in [({"pretty_name": "x", "tags": {"a": 1}}, "tags must be a list"),
                         ({"pretty_name": "x", "license": "CC BY 4.0"}, "Hub licence id"),
                         ({"pretty_name": "x", "samples_per_emotion": 100}, r"samples_per_emotion must be in \[0, 64\]"),
                         ({"pretty_name": "x", "repo_id": "no-namespace"}, "user/name"),
                         ({"pretty_name": "x", "licence": "mit"}, "unknown key"),
                         ({"pretty_name": " "}, "pretty_name must be")]:
        with pytest.raises(ConfigError, match=message):
            from_dict(PublishConfig, bad)
