"""`emocurate report RUN`: write the static HTML report of a run (index.html, data.js, thumbs/) into one folder.

It reads RUN/records.parquet, RUN/recipe.yaml and (for thumbnails) the ingest shards' image bytes; it writes only
under `out` (default RUN/report) and never changes the run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from emocurate.report.data import read_records, report_data, write_data_js
from emocurate.report.page import write_page
from emocurate.report.thumbnails import existing_thumbnails, make_thumbnails


def write_report(run_dir: str | Path, out: Optional[str | Path] = None, thumbnails: bool = True,
                 workers: Optional[int] = None, progress=None) -> dict:
    """Write the report; returns its paths, record count and seconds spent (thumbnails, data, page)."""
    from emocurate.recipe import load_recipe
    from emocurate.run.status import run_status
    from emocurate.store.manifest import n_ingest_shards

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "report"
    records = read_records(run_dir)  # the clear error for a run without records.parquet comes first
    if not (run_dir / "recipe.yaml").exists():
        raise FileNotFoundError(f"{run_dir / 'recipe.yaml'} not found: is {run_dir} a run folder of `emocurate build`?")
    recipe = load_recipe(run_dir / "recipe.yaml")
    out.mkdir(parents=True, exist_ok=True)
    seconds = {}
    start = time.perf_counter()
    if thumbnails:
        n = n_ingest_shards(run_dir) or (max(records.column("shard").to_pylist(), default=-1) + 1)
        thumbs = make_thumbnails(run_dir, out, n, recipe.max_image_pixels, recipe.max_image_side, workers, progress)
    else:
        thumbs = existing_thumbnails(out)
    seconds["thumbnails"] = time.perf_counter() - start
    start = time.perf_counter()
    data = report_data(run_dir, records, recipe, run_status(run_dir, recipe.emotions), thumbs)
    write_data_js(data, out / "data.js")
    seconds["data"] = time.perf_counter() - start
    start = time.perf_counter()
    page = write_page(out)
    seconds["page"] = time.perf_counter() - start
    return {"index": str(page), "records": data["n"], "thumbnails": len(thumbs),
            "seconds": {k: round(v, 3) for k, v in seconds.items()}}
