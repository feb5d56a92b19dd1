import json

import pyarrow.parquet as pq
from typer.testing import CliRunner

from emocurate.cli import app
from emocurate.run.decide import decide
from emocurate.run.status import run_status
from tests.helpers.records import _captions, _classify, _ingest, _recipe, _scores


def _run(tmp_path):
    recipe = _recipe()
    recipe.clip_filter.drop_fraction = 0.5
    pq.write_table(decide(_ingest(), _classify(), _captions(), _scores(), recipe), tmp_path / "records.parquet")
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
