"""Report generation at scale: `emocurate report` (thumbnails excluded) for a synthetic 100,000-record run, against
`emocurate status` on the same run (the duckdb query the report also runs) in the same process.

The run is synthetic (decide() on stored-score tables built here: 8 emotions, captions of ~15 words, duplicates,
ingest errors, missing captions); no model and no image. With Chromium and Playwright installed it also times the
page: load until ready, a filter, a caption search, a what-if evaluation, a page flip. Last line:
`report/status time ratio: X.X`.

    python benchmarks/report_scale.py --records 100000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

WORDS = ("a quiet lake under a golden sky evokes calm wonder while children laugh near the old red boat in soft "
         "morning light with dark clouds over empty streets and a lonely figure").split()


def synthetic_run(run: Path, n: int, seed: int = 0) -> None:
    """records.parquet and recipe.yaml of a run with `n` records, decided by decide() from synthetic stage tables."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from emocurate.core.emotions import EMOTIONS
    from emocurate.recipe import CurateRecipe
    from emocurate.run.decide import decide
    from emocurate.run.folder import save_recipe
    from emocurate.stages.ingest import INGEST_SCHEMA
    from emocurate.stages.per_shard import CAPTION_SCHEMA, CLIP_FILTER_SCHEMA, classify_schema

    rng = np.random.default_rng(seed)
    uniq = np.array([f"{k:064x}" for k in range(int(n * 0.97))])
    ids = np.concatenate([uniq, rng.choice(uniq, n - len(uniq))])  # 3% byte-identical copies
    failed = rng.random(n) < 0.01
    ingest = pa.table({
        "seq": np.arange(n), "shard": np.arange(n) // 1000, "id": ids, "source": ["folder:/data/images"] * n,
        "source_id": [f"dir{k % 97}/image_{k:07d}.jpg" for k in range(n)], "label": [None] * n, "metadata": ["{}"] * n,
        "width": np.full(n, 640), "height": np.full(n, 480), "format": ["JPEG"] * n, "original_mode": ["RGB"] * n,
        "ingest_dropped_by": np.where(failed, "ingest", None), "ingest_error": np.where(failed, "corrupt: bad", None),
        "image_bytes": [None] * n,
    }, schema=INGEST_SCHEMA)
    probs = rng.dirichlet(np.full(len(EMOTIONS), 0.3), len(uniq)).astype(np.float32)
    classify = pa.table({"id": uniq, **{f"prob_{e}": probs[:, k] for k, e in enumerate(EMOTIONS)}},
                        schema=classify_schema(EMOTIONS))
    top = np.array(EMOTIONS)[probs.argmax(axis=1)]
    has_caption = rng.random(len(uniq)) < 0.98
    captions = [" ".join(rng.choice(WORDS, 15)) for _ in range(int(has_caption.sum()))]
    cap_ids = uniq[has_caption]
    caption_table = pa.table({"id": cap_ids, "caption_emotion": top[has_caption], "caption": captions,
                              "caption_error": [None] * len(cap_ids), "caption_raw": [None] * len(cap_ids)},
                             schema=CAPTION_SCHEMA)
    scores = pa.table({"id": cap_ids, "caption": captions,
                       "clip_score": rng.normal(0.26, 0.04, len(cap_ids)).astype(np.float32).astype(np.float64),
                       "caption_tokens": np.full(len(cap_ids), 20, np.int32)}, schema=CLIP_FILTER_SCHEMA)
    recipe = CurateRecipe(sources=["folder:/data/images"])
    recipe.classify.min_confidence = 0.6
    run.mkdir(parents=True, exist_ok=True)
    pq.write_table(decide(ingest, classify, caption_table, scores, recipe), run / "records.parquet")
    save_recipe(run, recipe)


def thumbnail_rate(folder: Path, n: int, size: int = 640) -> float:
    """Images/s of make_thumbnails over `n` distinct size x size JPEGs in ingest shards of 1,000 (photo-like noise)."""
    import io

    import numpy as np
    import pyarrow as pa
    from PIL import Image

    from emocurate.report.thumbnails import make_thumbnails
    from emocurate.store import shards

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, size)
    blobs = []
    for _ in range(min(n, 64)):  # 64 distinct images, repeated: encoding them all would dominate the benchmark
        arr = ramp[None, :, None] * rng.uniform(0, 255, (1, 1, 3)) + rng.integers(0, 30, (size, size, 3))
        buf = io.BytesIO()
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
        blobs.append(buf.getvalue())
    n_shards = (n + 999) // 1000
    for s in range(n_shards):
        seqs = list(range(s * 1000, min(n, (s + 1) * 1000)))
        shards.write_shard(folder, "ingest", s, pa.table({"seq": seqs, "image_bytes": [blobs[q % len(blobs)] for q in seqs]}))
    start = time.perf_counter()
    made = make_thumbnails(folder, folder / "report", n_shards)
    assert len(made) == n
    return n / (time.perf_counter() - start)


def time_page(index: Path) -> dict[str, float]:
    """Milliseconds for the page's steps in headless Chromium (system package), measured inside the page."""
    from playwright.sync_api import sync_playwright

    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=flags)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        start = time.perf_counter()
        page.goto(index.resolve().as_uri())
        page.wait_for_selector("body[data-ready='1']", timeout=120_000)
        out = {"load until ready": (time.perf_counter() - start) * 1000}
        steps = {
            "filter emotion=awe, outcome=kept": "const s = document.getElementById('f-emotion'); s.value = 'awe';"
                                                " s.dispatchEvent(new Event('change'));"
                                                "const o = document.getElementById('f-outcome'); o.value = 'kept';"
                                                " o.dispatchEvent(new Event('change'));",
            "caption search (first time: lower-cases)": "const o = document.getElementById('f-outcome'); o.value = 'all';"
                                                        " o.dispatchEvent(new Event('change'));"
                                                        "document.getElementById('f-text').value = 'lonely';"
                                                        "document.getElementById('f-text').dispatchEvent(new Event('change'));",
            "what-if (slider moved)": "const r = document.getElementById('wi-conf'); r.value = '0.5';"
                                      " r.dispatchEvent(new Event('input'));",
            "next page": "document.getElementById('next').click();",
        }
        for name, js in steps.items():
            out[name] = page.evaluate(f"() => {{ const t = performance.now(); {js} return performance.now() - t; }}")
        out["matches after search"] = page.evaluate("window.emoReport.state.matches.length")
        browser.close()
    if errors:
        raise RuntimeError(f"console errors: {errors[:3]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--no-browser", action="store_true", help="Skip timing the page in Chromium.")
    parser.add_argument("--thumbnails", type=int, default=2000, help="Also time thumbnails of this many 640x640 JPEGs.")
    args = parser.parse_args()

    from emocurate.report.site import write_report
    from emocurate.run.status import run_status

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        start = time.perf_counter()
        synthetic_run(run, args.records)
        print(f"synthetic run of {args.records} records built in {time.perf_counter() - start:.1f} s (not timed below)")
        start = time.perf_counter()
        run_status(run)
        status_s = time.perf_counter() - start
        start = time.perf_counter()
        done = write_report(run, thumbnails=False)
        report_s = time.perf_counter() - start
        size = (run / "report" / "data.js").stat().st_size + (run / "report" / "index.html").stat().st_size
        print(f"emocurate status: {status_s:.2f} s")
        print(f"emocurate report --no-thumbnails: {report_s:.2f} s ({done['seconds']}); "
              f"data.js + index.html {size / 1e6:.1f} MB")
        if not args.no_browser:
            try:
                for name, ms in time_page(Path(done["index"])).items():
                    print(f"  page, {name}: {ms:.0f}" + ("" if name.startswith("matches") else " ms"))
            except ImportError as err:
                print(f"  page not timed: {err}")
        if args.thumbnails:
            rate = thumbnail_rate(Path(tmp) / "thumbs-run", args.thumbnails)
            print(f"thumbnails (made once, resumable; excluded above): {rate:.0f} images/s on {os.cpu_count()} CPUs "
                  f"(640x640 JPEGs) -> {args.records / rate / 60:.1f} min for {args.records} records")
        print(f"report/status time ratio: {report_s / status_s:.1f}")


if __name__ == "__main__":
    main()
