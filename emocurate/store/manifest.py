"""What a run folder records about itself that every layer reads: the finished ingest and the classifier's emotions.

Written by the driver (emocurate/run/); read by the driver, status and the executors' model loaders. No decisions here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

INGEST_COMPLETE = "shards/ingest/_complete.json"
"""Written when every source was read to the end: {"shards": N, "items": M}."""
MANIFEST = "run.json"
"""The run's identity (inputs and models its stored scores came from) and the classifier's emotions."""


def n_ingest_shards(run_dir: Path) -> Optional[int]:
    """How many ingest shards a finished ingest wrote, or None while ingest has not finished."""
    path = Path(run_dir) / INGEST_COMPLETE
    return json.loads(path.read_text())["shards"] if path.exists() else None


def classifier_emotions(run_dir: Path) -> Optional[list[str]]:
    """The emotions the run's classifier scores, fixed by its first build; None: all of the model's classes.

    Folders built before classifiers scored all their classes hold the recipe's emotions here: they resume with those."""
    return json.loads((Path(run_dir) / MANIFEST).read_text())["classifier_emotions"]
