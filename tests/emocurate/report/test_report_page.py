"""The demo run's report in headless Chromium: opens from disk with zero console errors and no request off the disk,
shows `emocurate status`'s counts, filters the gallery to the right tiles, and its sliders give refilter's numbers."""

import json
import shlex
import shutil

import pyarrow.parquet as pq
from typer.testing import CliRunner

from emocurate.cli import app
from emocurate.run.decide import NOT_CAPTIONED, NOT_SCORED

CELLS = "Array.from(document.querySelectorAll('{} td[data-col], {} td[data-stage]')).map(td => " \
        "[td.dataset.emotion, td.dataset.col || td.dataset.stage, Number(td.textContent)])"


def _cells(view, table: str) -> dict:
    return {(e, c): n for e, c, n in view.evaluate(CELLS.format(table, table))}


def _report(run, out=None) -> None:
    result = CliRunner().invoke(app, ["report", str(run)] + (["--out", str(out)] if out else []))
    assert result.exit_code == 0, result.output


def _tiles(view) -> list[int]:
    return view.evaluate("Array.from(document.querySelectorAll('#tiles .tile')).map(t => Number(t.dataset.i))")


def test_demo_report_opens_offline_with_status_counts(demo_run, tmp_path, page):
    _report(demo_run, tmp_path / "report")
    view = page.open(tmp_path / "report" / "index.html")
    status = json.loads(CliRunner().invoke(app, ["status", str(demo_run), "--json"]).output)
    after = status["remaining_after_stage"]
    cells = _cells(view, "#status-table")
    emotions = list(dict.fromkeys(e for per in after.values() for e in per))
    assert len(cells) == len(after) * (len(emotions) + 1)
    for (emotion, stage), n in cells.items():
        assert n == (sum(after[stage].values()) if emotion == "total" else after[stage][emotion]), (emotion, stage)
    reasons = view.evaluate("Array.from(document.querySelectorAll('#reasons-table tr')).slice(1).map(tr => "
                            "Array.from(tr.children).map(td => td.textContent))")
    assert reasons == [[r["stage"], r["reason"], str(r["n"]), r["example"]] for r in status["reasons"]]
    # at the run's own thresholds nothing flips, and what stays kept is status's last column
    whatif = _cells(view, "#whatif-table")
    for emotion in after["clip_filter"]:
        assert whatif[(emotion, "kept_new")] == whatif[(emotion, "kept_now")] == after["clip_filter"][emotion]
        assert whatif[(emotion, "to_kept")] == whatif[(emotion, "to_dropped")] == 0
    # thumbnails load from disk (lazily: scrolled into view)
    view.locator("#tiles").scroll_into_view_if_needed()
    view.wait_for_function("Array.from(document.querySelectorAll('#tiles img')).slice(0, 6)"
                           ".every(img => img.complete && img.naturalWidth > 0)", timeout=10_000)
    assert view.locator("#histograms svg").count() >= 1
    assert page.errors == [] and page.outside == []


def test_gallery_shows_the_tiles_of_a_filter(demo_run, tmp_path, page):
    _report(demo_run, tmp_path / "report")
    records = pq.read_table(demo_run / "records.parquet").to_pylist()
    view = page.open(tmp_path / "report" / "index.html")
    assert view.locator("#tiles .tile").count() == len(records) == 51  # one page of 96 by default

    view.select_option("#f-emotion", "contentment")
    view.select_option("#f-outcome", "classify")
    want = [i for i, r in enumerate(records) if r["emotion"] == "contentment" and r["dropped_by"] == "classify"]
    assert sorted(_tiles(view)) == want and len(want) >= 10
    assert view.inner_text("#match-count").startswith(f"{len(want)} of 51")
    first = view.locator("#tiles .tile").first.inner_text()
    assert "low_confidence" in first and "demo:" in first and "dropped by classify" in first

    view.select_option("#f-emotion", "all")
    view.select_option("#f-outcome", "kept")
    kept = [i for i, r in enumerate(records) if r["status"] == "kept"]
    shown = _tiles(view)
    assert sorted(shown) == kept
    scores = [records[i]["clip_score"] for i in shown]
    assert scores == sorted(scores)  # lowest first: the borderline cases side by side

    view.fill("#f-min", "0.1")
    view.fill("#f-max", "0.2")
    view.locator("#f-max").dispatch_event("change")
    assert sorted(_tiles(view)) == [i for i in kept if 0.1 <= records[i]["clip_score"] <= 0.2]

    view.fill("#f-min", "")
    view.fill("#f-max", "")
    view.locator("#f-max").dispatch_event("change")
    view.select_option("#f-outcome", "all")
    word = records[kept[0]]["caption"].split()[0][:4].upper()  # the search ignores case
    view.fill("#f-text", word)
    want = [i for i, r in enumerate(records) if r["caption"] and word.lower() in r["caption"].lower()]
    view.wait_for_function(f"document.getElementById('match-count').textContent.startsWith('{len(want)} of')")
    assert sorted(_tiles(view)) == want

    view.fill("#f-text", "")
    view.wait_for_function("document.getElementById('match-count').textContent.startsWith('51 of')")
    view.select_option("#f-page-size", "48")
    assert len(_tiles(view)) == 48 and view.inner_text("#page-info") == "page 1 of 2"
    view.click("#next")
    assert len(_tiles(view)) == 3 and view.is_disabled("#next")
    assert page.errors == [] and page.outside == []


def test_whatif_sliders_match_refilter(demo_run, tmp_path, page):
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    _report(run)
    before = pq.read_table(run / "records.parquet").to_pylist()
    view = page.open(run / "report" / "index.html")
    view.fill("#wi-conf-num", "0.22")  # lower: low-confidence records come back (without captions yet)
    view.evaluate("(() => { const r = document.getElementById('wi-frac'); r.value = '0.3'; "
                  "r.dispatchEvent(new Event('input')); })()")  # the slider itself
    assert view.input_value("#wi-frac-num") == "0.3"
    shown = _cells(view, "#whatif-table")
    predicted = view.evaluate("Array.from(window.emoReport.state.result.outcome)")
    command = view.inner_text("#wi-command")
    view.select_option("#f-outcome", "flip")  # the gallery shows exactly the records that would flip
    flips = shown[("total", "to_kept")] + shown[("total", "to_dropped")]
    assert view.inner_text("#match-count").startswith(f"{flips} of 51")
    assert command == f"emocurate refilter {run} --set classify.min_confidence=0.22 --set clip_filter.drop_fraction=0.3"

    result = CliRunner().invoke(app, shlex.split(command)[1:] + ["--no-publish"])  # the printed command, run
    assert result.exit_code == 0, result.output
    after = pq.read_table(run / "records.parquet").to_pylist()
    outcomes = view.evaluate("window.emoReport.data.outcomes")
    assert [outcomes[o] for o in predicted] == [r["dropped_by"] or "kept" for r in after]
    emotions = {r["emotion"] or "(none)" for r in before}
    for e in emotions:
        pairs = [(b["status"] == "kept", a["status"] == "kept") for b, a in zip(before, after) if (b["emotion"] or "(none)") == e]
        assert shown[(e, "kept_new")] == sum(now for _, now in pairs), e
        assert shown[(e, "to_kept")] == sum(now and not was for was, now in pairs), e
        assert shown[(e, "to_dropped")] == sum(was and not now for was, now in pairs), e
    for e in {r["emotion"] for r in after if r["status"] == "kept"}:  # the histograms' red line: the new cut
        cut = view.get_attribute(f"#histograms svg[data-emotion='{e}'] line[data-cut='whatif']", "data-value")
        assert float(cut) == min(r["clip_score"] for r in after if r["status"] == "kept" and r["emotion"] == e), e
    waiting = sum(r["reason"] in (NOT_CAPTIONED, NOT_SCORED) for r in after)
    assert shown[("total", "pending")] == waiting > 0
    assert shown[("total", "to_dropped")] > 0  # the larger CLIP cut drops kept records
    assert page.errors == [] and page.outside == []
