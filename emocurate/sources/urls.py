"""The `urls:FILE` source: read a URL list (txt, csv, tsv, jsonl, parquet), crawl what is not done yet, and yield one
SourceItem per URL in input order, resuming from the crawl state in `state_dir`.

A URL listed twice keeps the plain URL as `source_id` for its first row; later rows get `URL#row=N` (N = 0-based
index among the list's URL rows) and share one fetch.
Identical bytes under different URLs: the first in input order is ok, later ones are `duplicate`. It does not decode
images for the pipeline or decide anything beyond fetching.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from emocurate.crawl.fetch import CrawlConfig, CrawlProgress
from emocurate.crawl.state import CrawlState, ShardWriter, record_run
from emocurate.crawl.background import BackgroundCrawl
from emocurate.sources.item import SourceItem

DEFAULT_METADATA = ("caption", "label", "license", "title")
TEXT_SUFFIXES = (".txt", ".urls", ".list", "")


@dataclass(frozen=True)
class UrlRow:
    key: str
    url: str
    label: str | None
    metadata: dict[str, Any]


def read_rows(path: Path, url_column: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows as dicts and the column names, by file suffix; txt lists (one URL a line, '#' comments) give one column."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            return list(reader), list(reader.fieldnames or [])
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{n}: not a JSON object ({err}); each line must be one object") from None
                if not isinstance(rows[-1], dict):
                    raise ValueError(f"{path}:{n}: each line must be a JSON object with a {url_column!r} key")
        return rows, sorted({k for row in rows for k in row})
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return table.to_pylist(), table.column_names
    if suffix in TEXT_SUFFIXES:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        return [{url_column: ln} for ln in lines if ln and not ln.startswith("#")], [url_column]
    raise ValueError(f"{path}: unknown URL list format {suffix!r}; use .txt, .csv, .tsv, .jsonl or .parquet")


def read_url_list(path: str | Path, cfg: CrawlConfig) -> list[UrlRow]:
    """Read the list, check the URL column exists, choose metadata columns, and give each row a unique key."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"URL list not found: {path}")
    rows, columns = read_rows(path, cfg.url_column)
    if cfg.url_column not in columns:
        raise ValueError(
            f"{path}: no {cfg.url_column!r} column (columns: {', '.join(columns) or 'none'}); set crawl.url_column"
        )
    if cfg.metadata_columns is None:
        carried = [c for c in DEFAULT_METADATA if c in columns]
    else:
        missing = [c for c in cfg.metadata_columns if c not in columns]
        if missing:
            raise ValueError(f"{path}: crawl.metadata_columns names missing column(s) {missing}; columns: {columns}")
        carried = list(cfg.metadata_columns)
    seen: set[str] = set()
    out = []
    for n, row in enumerate(rows):
        url = row.get(cfg.url_column)
        url = "" if url is None else str(url).strip()
        key = url if url not in seen else f"{url}#row={n}"
        seen.add(url)
        label = row.get("label")
        label = str(label).strip() if label not in (None, "") else None
        out.append(UrlRow(key, url, label, {c: row.get(c) for c in carried}))
    return out


def iter_urls(
    path: str,
    state_dir: Path,
    cfg: CrawlConfig,
    progress: Callable[..., None] | None = None,
    on_counts: Callable[[CrawlProgress], None] | None = None,
) -> Iterator[SourceItem]:
    """Yield exactly one SourceItem per listed URL, in input order, fetching only URLs the state has not done
    (plus retryable failures when `cfg.retry_failed`).

    `progress(task, advance, total)` is the project's progress protocol: task 'fetch' advances per URL finished (those
    resumed from the state at once), and 'fetch <status>' (e.g. 'fetch timeout') counts each failure kind live.
    `on_counts(CrawlProgress)` gets the full counts (ok, bytes, failures by kind, rate), both about 5 times a second.
    """
    rows = read_url_list(path, cfg)
    state_dir = Path(state_dir)
    state = CrawlState(state_dir)
    record_run(state_dir, {"source": f"urls:{path}", "urls": len(rows), **cfg.settings()})
    jobs = [(n, row.key, row.url) for n, row in enumerate(rows) if state.needs_fetch(row.key, cfg.retry_failed)]
    fetching = {n for n, _, _ in jobs}
    counts, seen = CrawlProgress(total=len(rows)), set()
    for n, row in enumerate(rows):
        if n not in fetching:
            known = state.rows[row.key]
            counts.add("duplicate" if known.status == "ok" and known.sha256 in seen else known.status)
            if known.status == "ok":
                seen.add(known.sha256)
    counts.resumed = counts.done
    crawl = BackgroundCrawl(jobs, cfg, ShardWriter(state_dir, cfg.shard_rows), counts, seen).start()
    report = ProgressReporter(progress, on_counts, len(rows))

    def tick(force: bool = False) -> None:
        report(crawl.snapshot, force)

    first_of: dict[str, str] = {}  # sha256 -> source_id of the first ok row in input order
    try:
        for n, row in enumerate(rows):
            if n in fetching:
                res = crawl.result(n, tick)
                status, error, http_status, sha, data = res.status, res.error, res.http_status, res.sha256, res.data
            else:
                known = state.rows[row.key]
                status, error, http_status, sha = known.status, known.error, known.http_status, known.sha256
                data = None
            if status == "ok" and sha in first_of:
                status, error, data = "duplicate", f"duplicate: same bytes as {first_of[sha]}", None
            elif status == "ok":
                first_of[sha] = row.key
                data = data if data is not None else state.body(row.key)
            tick()
            yield SourceItem(
                source=f"urls:{path}",
                source_id=row.key,
                data=data,
                label=row.label,
                metadata={**row.metadata, "url": row.url, "fetch_status": status, "http_status": http_status},
                error=error,
                dropped_by=None if status == "ok" else "fetch",
            )
    finally:
        crawl.close()
        tick(force=True)


class ProgressReporter:
    """Turns CrawlProgress snapshots into `progress(task, advance, total)` deltas and `on_counts` calls, throttled."""

    def __init__(self, progress: Callable[..., None] | None, on_counts: Callable[[CrawlProgress], None] | None, total: int):
        self.progress, self.on_counts, self.total = progress, on_counts, total
        self.last_time = 0.0
        self.reported: dict[str, int] = {}

    def __call__(self, snapshot: Callable[[], CrawlProgress], force: bool = False) -> None:
        if not (self.progress or self.on_counts) or (not force and time.monotonic() - self.last_time < 0.2):
            return
        self.last_time = time.monotonic()
        counts = snapshot()
        if self.on_counts:
            self.on_counts(counts)
        if self.progress:
            for task, value in [("fetch", counts.done)] + [(f"fetch {k}", v) for k, v in counts.failures.items()]:
                first = task not in self.reported
                advance = value - self.reported.get(task, 0)
                if advance or first:
                    self.progress(task, advance, self.total if task == "fetch" and first else None)
                self.reported[task] = value
