"""URL lists in every format: the URL column, carried metadata, labels, repeated URLs, and clear errors."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from emocurate.crawl.fetch import CrawlConfig
from emocurate.sources.urls import iter_urls, read_url_list
from tests.helpers.crawl_server import Body, CrawlServer

ROWS = [
    {"url": "http://127.0.0.1/a.jpg", "caption": "a calm lake", "label": "contentment", "license": "cc-by", "artist": "x"},
    {"url": "http://127.0.0.1/b.jpg", "caption": "a storm", "label": "", "license": "cc0", "artist": "y"},
    {"url": "http://127.0.0.1/a.jpg", "caption": "again", "label": "awe", "license": "cc0", "artist": "z"},
]


def write_list(tmp_path, fmt: str):
    path = tmp_path / f"list.{fmt}"
    if fmt in ("csv", "tsv"):
        sep = "\t" if fmt == "tsv" else ","
        lines = [sep.join(ROWS[0])] + [sep.join(str(v) for v in r.values()) for r in ROWS]
        path.write_text("\n".join(lines) + "\n")
    elif fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(ROWS), path)
    else:
        path.write_text("\n".join(r["url"] for r in ROWS) + "\n")
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_tabular_lists_carry_default_metadata_and_labels(tmp_path, fmt):
    rows = read_url_list(write_list(tmp_path, fmt), CrawlConfig())
    assert [r.url for r in rows] == [r["url"] for r in ROWS]
    assert [r.key for r in rows] == ["http://127.0.0.1/a.jpg", "http://127.0.0.1/b.jpg", "http://127.0.0.1/a.jpg#row=2"]
    assert rows[0].metadata == {"caption": "a calm lake", "label": "contentment", "license": "cc-by"}
    assert [r.label for r in rows] == ["contentment", None, "awe"]


def test_txt_list_and_configured_columns(tmp_path):
    rows = read_url_list(write_list(tmp_path, "txt"), CrawlConfig())
    assert [r.metadata for r in rows] == [{}, {}, {}] and rows[2].key.endswith("#row=2")
    path = tmp_path / "other.jsonl"
    path.write_text(json.dumps({"image_url": "http://127.0.0.1/x.jpg", "artist": "k"}) + "\n")
    [row] = read_url_list(path, CrawlConfig(url_column="image_url", metadata_columns=["artist"]))
    assert row.url == "http://127.0.0.1/x.jpg" and row.metadata == {"artist": "k"}


def test_list_errors_say_what_to_fix(tmp_path):
    path = write_list(tmp_path, "csv")
    with pytest.raises(ValueError, match="no 'link' column .*set crawl.url_column"):
        read_url_list(path, CrawlConfig(url_column="link"))
    with pytest.raises(ValueError, match="metadata_columns names missing column"):
        read_url_list(path, CrawlConfig(metadata_columns=["year"]))
    with pytest.raises(ValueError, match="unknown URL list format '.xlsx'"):
        (tmp_path / "l.xlsx").write_text("x")
        read_url_list(tmp_path / "l.xlsx", CrawlConfig())
    with pytest.raises(ValueError, match="URL list not found"):
        read_url_list(tmp_path / "nope.txt", CrawlConfig())
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"url": "http://127.0.0.1/a"}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2: not a JSON object"):
        read_url_list(bad, CrawlConfig())


def test_items_carry_metadata_label_and_fetch_fields(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (9, 9), "red").save(buf, "PNG")
    with CrawlServer({"/a.png": Body(buf.getvalue(), "image/png")}) as srv:
        path = tmp_path / "list.jsonl"
        rows = [{"url": srv.url("/a.png"), "label": "awe", "title": "T"}, {"url": "", "label": "fear"}]
        path.write_text("\n".join(json.dumps(r) for r in rows))
        ok, empty = iter_urls(str(path), tmp_path / "state", CrawlConfig(allow_hosts=["127.0.0.1"]))
    assert ok.label == "awe" and ok.data == buf.getvalue() and ok.source_id == srv.url("/a.png")
    assert ok.metadata == {"label": "awe", "title": "T", "url": srv.url("/a.png"), "fetch_status": "ok", "http_status": 200}
    assert empty.data is None and empty.dropped_by == "fetch" and empty.error.startswith("bad_url: ")
    assert empty.label == "fear" and empty.metadata["title"] is None
