"""The executor contract: run ingest or one model stage over shards and yield each shard's result table; write nothing.

The driver (emocurate/run/driver.py) decides which shards a stage still needs and writes every file from what an
executor yields, so the in-process, per-device and Ray executors cannot diverge in planning, resume or summaries.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, NamedTuple, Protocol

import pyarrow as pa

from emocurate.stages.table import Stage


class IngestShard(NamedTuple):
    index: int
    first_seq: int
    """The input position of the shard's first item."""
    items: list
    """The shard's SourceItems, in input order."""


class ShardResult(NamedTuple):
    shard: int
    table: pa.Table
    model: dict
    """Provenance of the model that computed it (backend, model, revision, ...), for RUN/models.json."""
    load_s: float
    """Seconds the worker that computed it spent loading the model before this shard (0 once loaded)."""


class Executor(Protocol):
    def ingest(self, shards: Iterable[IngestShard]) -> Iterator[tuple[int, pa.Table]]:
        """(shard index, ingest table) for each shard, in any order; `shards` is consumed lazily."""
        ...

    def run(self, stage: Stage, todo: dict[int, pa.Table], tick: Callable[[int], None]) -> Iterator[ShardResult]:
        """The result of `stage` on each shard of `todo` (shard -> key table), in any order; `tick(k)` as k items finish."""
        ...

    def close(self) -> None:
        """Free models, worker processes or the cluster session."""
        ...
