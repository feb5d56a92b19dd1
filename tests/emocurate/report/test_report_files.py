"""What `emocurate report` writes: only under its --out folder, thumbnails once (resumable), data.js exact and compact;
`report: true` in a recipe writes it after build and refilter; clear errors."""

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from emocurate.cli import app
from emocurate.report.data import score_order
from emocurate.report.site import write_report
from emocurate.stages.clip_filter import bottom_fraction_mask
from tests.helpers.paths import REPO


def _files(root: Path, skip: Path | None = None) -> dict:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
            if p.is_file() and (skip is None or skip not in p.parents)}


def _data(out: Path) -> dict:
    text = (out / "data.js").read_text(encoding="utf-8")
    assert text.startswith("window.EMOREPORT = ") and text.endswith(";\n")
    return json.loads(text[len("window.EMOREPORT = "):-2])


def test_report_writes_only_under_out_and_makes_thumbnails_once(demo_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    before = _files(run)
    done = write_report(run)
    assert _files(run, skip=run / "report") == before  # the run folder is untouched
    records = pq.read_table(run / "records.parquet").to_pylist()
    decodable = [r["seq"] for r in records if r["dropped_by"] not in ("ingest", "fetch")]
    assert done["thumbnails"] == len(decodable) == 47
    thumbs = sorted((run / "report" / "thumbs").glob("*/*.jpg"))
    assert sorted(int(p.stem) for p in thumbs) == decodable
    with Image.open(thumbs[0]) as im:
        assert im.format == "JPEG" and max(im.size) <= 160
    assert _data(run / "report")["cols"]["thumb"] == [int(r["seq"] in decodable) for r in records]

    # a second report redoes no finished thumbnail shard; a shard without its list is redone
    marker = run / "report" / "thumbs" / "00001.json"
    marker.unlink()
    stamps = {p: p.stat().st_mtime_ns for p in thumbs}
    write_report(run)
    assert marker.exists()
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items() if p.parent.name != "00001")
    assert any(p.stat().st_mtime_ns != t for p, t in stamps.items() if p.parent.name == "00001")
    assert write_report(run, thumbnails=False)["thumbnails"] == 47  # --no-thumbnails keeps the earlier ones


def test_data_js_scores_are_exact_and_ordered_like_the_clip_filter(demo_run, tmp_path):
    write_report(demo_run, tmp_path / "report", thumbnails=False)
    data = _data(tmp_path / "report")
    records = pq.read_table(demo_run / "records.parquet")
    for name, column in (("score", "clip_score"), ("conf", "emotion_confidence")):
        decoded = np.frombuffer(base64.b64decode(data["cols"][name]), "<f8")
        want = np.array([np.nan if v is None else v for v in records.column(column).to_pylist()])
        assert np.array_equal(decoded, want, equal_nan=True)
    assert data["recipe"]["min_confidence"] == 0.24 and data["n"] == 51 == len(data["cols"]["caption"])
    assert data["fetch"] is None  # no urls: source


def test_score_order_breaks_ties_by_id_like_bottom_fraction_mask():
    import pyarrow as pa

    ids = ["d", "b", "a", "c", "b", "e"]
    scores = [0.2, 0.1, 0.2, None, 0.1, 0.2]
    order = score_order(pa.table({"id": ids, "clip_score": pa.array(scores, pa.float64())})).tolist()
    assert order == [1, 4, 2, 0, 5]  # score, then id, then input order; unscored left out
    scored = [i for i in range(6) if scores[i] is not None]
    for k in range(1, 5):  # the k lowest of the order are what the CLIP filter drops
        fraction = k / len(scored)
        mask = bottom_fraction_mask(np.array([scores[i] for i in scored]), ["x"] * len(scored), fraction,
                                    [ids[i] for i in scored])
        assert {scored[j] for j in np.flatnonzero(mask)} == set(order[:k])


def test_recipe_report_true_writes_it_after_build_and_refilter(demo_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    result = CliRunner().invoke(app, ["build", "--recipe", str(REPO / "recipes/curate/demo.yaml"), "--out", str(run),
                                      "--no-publish", "report=true"])  # every shard is done: decides and reports
    assert result.exit_code == 0, result.output
    assert "report:" in result.output and (run / "report" / "index.html").exists()
    result = CliRunner().invoke(app, ["refilter", str(run), "--set", "clip_filter.drop_fraction=0.5", "--no-publish"])
    assert result.exit_code == 0, result.output
    assert _data(run / "report")["recipe"]["drop_fraction"] == 0.5


def test_report_without_records_is_one_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.count("error:") == 1 and "run `emocurate build` first" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "report").exists()


@pytest.mark.parametrize("name", ["index.html", "report.js", "whatif.js", "report.css"])
def test_page_assets_reference_nothing_outside(name):
    text = (REPO / "emocurate" / "report" / "assets" / name).read_text()
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    assert "fetch(" not in text and "XMLHttpRequest" not in text


def test_crawled_run_shows_fetch_statuses(tmp_path, page):
    import pyarrow as pa

    from emocurate.recipe import CurateRecipe
    from emocurate.run.decide import decide
    from emocurate.run.folder import save_recipe
    from emocurate.stages.ingest import INGEST_SCHEMA
    from tests.helpers.records import stored_captions, stored_classify, stored_scores

    statuses = ["ok", "ok", "timeout", "http_error", "ok", "robots_disallowed", "ok"]
    rows = []
    for seq, (id_, status) in enumerate(zip("ABGCDHE", statuses)):
        failed = status != "ok"
        rows.append(dict(seq=seq, shard=0, id=id_, source="urls:list.txt", source_id=f"http://example.test/{seq}.jpg",
                         label=None, metadata=json.dumps({"fetch_status": status}), width=None if failed else 8,
                         height=None if failed else 8, format="JPEG", original_mode="RGB",
                         ingest_dropped_by="fetch" if failed else None, ingest_error=f"{status}: x" if failed else None,
                         image_bytes=None))
    recipe = CurateRecipe(sources=["demo"], emotions=["amusement", "awe", "fear"])
    run = tmp_path / "run"
    run.mkdir()
    pq.write_table(decide(pa.Table.from_pylist(rows, schema=INGEST_SCHEMA), stored_classify(), stored_captions(), stored_scores(), recipe),
                   run / "records.parquet")
    save_recipe(run, recipe)
    write_report(run, thumbnails=False)
    assert _data(run / "report")["fetch"] == {"ok": 4, "http_error": 1, "robots_disallowed": 1, "timeout": 1}
    view = page.open(run / "report" / "index.html")
    assert view.is_visible("#fetch-box")
    rows = view.evaluate("Array.from(document.querySelectorAll('#fetch-table tr')).slice(1).map(tr => tr.innerText)")
    assert rows == ["ok\t4", "http_error\t1", "robots_disallowed\t1", "timeout\t1"]
    view.select_option("#f-outcome", "fetch")
    assert view.locator("#tiles .tile").count() == 3
    assert page.errors == [] and page.outside == []
