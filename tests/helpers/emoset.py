"""A small EmoSet-118K folder (image/, annotation/, split JSON files) built in code."""

import json

from tests.helpers.images import jpeg


def make_emoset(root, n_per_split=(3, 2, 1)):
    """A small EmoSet-118K layout: image/<emotion>/..., annotation/<emotion>/....json, train/val/test.json."""
    emotions = ["amusement", "awe", "sadness"]
    k = 0
    for split, n in zip(("train", "val", "test"), n_per_split):
        entries = []
        for _ in range(n):
            emotion = emotions[k % 3]
            name = f"{emotion}_{k:05d}"
            img, ann = f"image/{emotion}/{name}.jpg", f"annotation/{emotion}/{name}.json"
            (root / img).parent.mkdir(parents=True, exist_ok=True)
            (root / ann).parent.mkdir(parents=True, exist_ok=True)
            (root / img).write_bytes(jpeg(100 + k))
            (root / ann).write_text(json.dumps({
                "emotion": emotion, "brightness": 0.4, "colorfulness": 0.7, "scene": "beach",
                "object": ["person", "dog"], "facial_expression": "happy", "human_action": "running"}))
            entries.append([emotion, name, img, ann])
            k += 1
        (root / f"{split}.json").write_text(json.dumps(entries))
    return root
