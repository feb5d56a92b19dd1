"""Source specs -> one ordered stream of SourceItems: `folder:`, `hf:`, `wikiart`, `emoset:`, `urls:`, `demo`.

It only reads inputs and says where each came from; decoding, dedup and every decision happen later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

from emocurate.sources.item import SourceItem

KINDS = ("folder", "hf", "wikiart", "emoset", "urls", "demo")
WIKIART_REPO = "huggan/wikiart"
_SPLIT = re.compile(r"^[A-Za-z0-9_.+\-]+$")


@dataclass(frozen=True)
class SourceSpec:
    kind: str
    target: str
    """Path, repo id or file the source reads ('' for demo)."""
    split: Optional[str] = None


def parse_spec(spec: str) -> SourceSpec:
    """Parse `kind:target[:split]`; a clear ValueError for anything else."""
    kind, _, rest = spec.partition(":")
    if kind not in KINDS:
        raise ValueError(f"unknown source {spec!r}: it must start with one of {', '.join(k + ':' for k in KINDS)} (or be `wikiart` / `demo`)")
    if kind == "demo":
        return SourceSpec("demo", rest)
    if kind == "wikiart" and not rest:
        return SourceSpec("hf", WIKIART_REPO, "train")
    if not rest:
        raise ValueError(f"source {spec!r} needs a target after '{kind}:', e.g. {kind}:/data/images")
    split = None
    if kind in ("hf", "wikiart", "emoset"):
        head, sep, tail = rest.rpartition(":")
        if sep and head and _SPLIT.match(tail) and "/" not in tail:
            rest, split = head, tail
    if kind == "wikiart":
        return SourceSpec("hf", rest, split or "train")
    return SourceSpec(kind, rest, split)


def iter_items(
    specs: Sequence[str], run_dir: Optional[Path], limit: Optional[int] = None, progress=None, crawl_cfg=None,
    follow_symlinks: bool = False,
) -> Iterator[SourceItem]:
    """Yield every source's items in order, at most `limit` in total. `progress(task, advance, total)` is optional.

    `run_dir` holds what `demo` writes and the crawler's state (`urls:`); other sources do not need it.
    `follow_symlinks`: `folder:` sources also read symlinks leading outside their folder (see sources/folder.py)."""
    count = 0
    for spec in specs:
        for item in _iter_one(spec, run_dir, crawl_cfg, progress, follow_symlinks):
            if limit is not None and count >= limit:
                return
            count += 1
            yield item
        if limit is not None and count >= limit:
            return


def _iter_one(spec: str, run_dir: Optional[Path], crawl_cfg, progress, follow_symlinks: bool) -> Iterator[SourceItem]:
    parsed = parse_spec(spec)
    if parsed.kind in ("demo", "urls") and run_dir is None:
        raise ValueError(f"source {spec!r} needs a run folder (it writes files or crawl state there)")
    run_dir = Path(run_dir) if run_dir is not None else None
    if parsed.kind == "folder":
        from emocurate.sources.folder import iter_folder

        return iter_folder(parsed.target, spec, follow_symlinks)
    if parsed.kind == "hf":
        from emocurate.sources.hf import iter_hf

        return iter_hf(parsed.target, parsed.split, spec)
    if parsed.kind == "emoset":
        from emocurate.sources.emoset import iter_emoset

        return iter_emoset(parsed.target, parsed.split, spec)
    if parsed.kind == "demo":
        from emocurate.sources.demo import iter_demo

        return iter_demo(run_dir / "demo_images", spec)
    # urls: the crawler owns fetching, politeness and its own resume state under RUN/crawl.
    from emocurate.sources.urls import iter_urls
    if crawl_cfg is None:
        from emocurate.crawl.fetch import CrawlConfig

        crawl_cfg = CrawlConfig()
    return iter_urls(parsed.target, run_dir / "crawl", crawl_cfg, progress=progress)
