"""A labelled source (`emoset:PATH`, or `folder:PATH` with emotion-named dirs) as a `datasets.Dataset` for
`emocurate train-classifier`; anything else is loaded by `classify.load_labelled_dataset`. Unlabelled and
undecodable items are left out of the training set (and counted)."""

from __future__ import annotations

from typing import Optional

from emocurate.core.emotions import EMOTIONS

SOURCE_PREFIXES = ("emoset:", "folder:")


def _rows(spec: str):
    from emocurate.core.decode import decode_image
    from emocurate.sources import iter_items

    for item in iter_items([spec], run_dir=None):
        if item.label is not None and item.data and decode_image(item.data).image is not None:
            yield {"image": {"bytes": item.data, "path": None}, "emotion": item.label, "source_id": item.source_id}


def labelled_dataset(dataset: str, split: Optional[str] = "train"):
    """A Dataset with `image` and `emotion` (ClassLabel over the eight emotions) columns."""
    if not dataset.startswith(SOURCE_PREFIXES):
        from emocurate.stages.classify import load_labelled_dataset

        return load_labelled_dataset(dataset, split or "train")
    from datasets import ClassLabel, Dataset, Features, Image, Value

    spec = dataset if dataset.startswith("folder:") or split is None or dataset.count(":") > 1 else f"{dataset}:{split}"
    features = Features({"image": Image(), "emotion": ClassLabel(names=list(EMOTIONS)), "source_id": Value("string")})
    from datasets.exceptions import DatasetGenerationError

    try:
        ds = Dataset.from_generator(_rows, gen_kwargs={"spec": spec}, features=features)
    except ValueError:  # `datasets` refuses an empty generator with a message about splits
        ds = None
    except DatasetGenerationError as err:  # it wraps the source's own error (e.g. a missing EmoSet folder): raise that one
        if isinstance(err.__cause__, (OSError, ValueError)):
            raise err.__cause__ from None
        raise
    if ds is None or len(ds) == 0:
        raise ValueError(f"{dataset} has no labelled, decodable images (labels come from emotion-named dirs or EmoSet)")
    return ds
