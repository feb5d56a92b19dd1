import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from typer.testing import CliRunner

from emocurate.cli import app
from emocurate.run.decide import decide
from emocurate.run.status import run_status
from tests.helpers.records import stored_captions, stored_classify, stored_ingest, small_recipe, stored_scores


def _run(tmp_path):
    recipe = small_recipe()
    recipe.clip_filter.drop_fraction = 0.5
    pq.write_table(decide(stored_ingest(), stored_classify(), stored_captions(), stored_scores(), recipe), tmp_path / "records.parquet")
    return tmp_path


def test_status_counts(tmp_path):
    data = run_status(_run(tmp_path), ["amusement", "awe", "fear"])
    assert data["records"] == 7 and data["status"] == {"dropped": 6, "kept": 1}
    after = data["remaining_after_stage"]
    assert list(after) == ["ingest", "dedup", "classify", "caption", "clip_filter"]
    assert after["ingest"] == {"amusement": 1, "awe": 3, "fear": 1, "excitement": 1}
    assert after["dedup"]["awe"] == 2 and after["classify"] == {"amusement": 0, "awe": 2, "fear": 1}
    assert after["caption"] == {"amusement": 0, "awe": 2, "fear": 0} and after["clip_filter"]["awe"] == 1
    reasons = {(r["stage"], r["reason"]): r["n"] for r in data["reasons"]}
    assert reasons == {("caption", "caption_error"): 1, ("dedup", "duplicate"): 1, ("ingest", "corrupt"): 1,
                       ("classify", "low_confidence"): 1, ("classify", "emotion_not_kept"): 1,
                       ("clip_filter", "low_clip_score"): 1}


def test_status_cli_json_and_table(tmp_path):
    run = _run(tmp_path)
    result = CliRunner().invoke(app, ["status", str(run), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == json.loads(json.dumps(run_status(run)))
    table = CliRunner().invoke(app, ["status", str(run)])
    assert table.exit_code == 0 and "low_confidence" in table.output and "clip_filter" in table.output


def test_status_without_records_is_clear(tmp_path):
    result = CliRunner().invoke(app, ["status", str(tmp_path)])
    assert result.exit_code == 2 and "run `emocurate build` first" in result.output


def test_a_live_run_shows_unprocessed_records_as_pending_not_dropped(tmp_path):
    from emocurate.run.folder import save_recipe
    from emocurate.store import shards
    from tests.helpers.records import small_recipe

    ingest, classify = stored_ingest(), stored_classify()
    for s in (0, 1):  # ingest finished both shards; classify only the first, the build is still running
        shards.write_shard(tmp_path, "ingest", s, ingest.filter(pc.equal(ingest.column("shard"), s)))
    shards.write_shard(tmp_path, "classify", 0, classify.filter(pc.is_in(classify.column("id"), pa.array(["A", "B"]))))
    save_recipe(tmp_path, small_recipe())
    data = run_status(tmp_path)
    assert data["live"] and data["records"] == 7
    # D, E, F wait for classify; A and B (classified) for caption; only the duplicate and the corrupt file are dropped
    assert data["status"] == {"dropped": 2, "pending": 5} and data["pending_at_stage"] == {"classify": 3, "caption": 2}
    assert all(not r["reason"].endswith("_yet") for r in data["reasons"])  # pending is not a drop reason
    table = CliRunner().invoke(app, ["status", str(tmp_path)])
    text = " ".join(table.output.split())
    assert table.exit_code == 0 and "7 records, dropped 2, pending 5" in text
    assert "pending (not processed yet; the running or next build does it): classify 3, caption 2" in text
    assert "folder:x:3.jpg" in text  # an example source id, shown as written
