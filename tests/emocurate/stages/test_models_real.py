"""The default real models, end to end. Opt-in: downloads ~8 GB. Never run in CI.

Run: `HF_HUB_OFFLINE=0 EMOCURATE_REAL_MODELS=1 python -m pytest -q -m real_models tests/emocurate/stages/test_models_real.py`
"""

import os
import re

import pytest

pytestmark = [
    pytest.mark.real_models,
    pytest.mark.skipif(os.environ.get("EMOCURATE_REAL_MODELS") != "1" or os.environ.get("HF_HUB_OFFLINE") == "1",
                       reason="set EMOCURATE_REAL_MODELS=1 and HF_HUB_OFFLINE=0 to download and test the real models"),
]


def cat_photo():
    from PIL import Image
    from skimage import data

    return Image.fromarray(data.chelsea())


def test_real_clip_scores_a_matching_caption_higher():
    from emocurate.stages.clip_filter import ClipFilterConfig, load_scorer

    scorer = load_scorer(ClipFilterConfig())
    good, bad = scorer.score([cat_photo()] * 2, ["a ginger cat looking at the camera", "a plate of spaghetti on a table"])
    assert good > bad + 0.05
    assert re.fullmatch(r"[0-9a-f]{40}", scorer.revision)


def test_real_zeroshot_probabilities():
    from emocurate.stages.classify import ClassifyConfig, load_classifier
    from emocurate.core.emotions import EMOTIONS

    probs = load_classifier(ClassifyConfig(), EMOTIONS).predict([cat_photo()])
    assert probs.shape == (1, 8) and abs(float(probs.sum()) - 1) < 1e-5


def test_real_qwen_captions_one_sentence():
    from emocurate.stages.caption import load_captioner
    from emocurate.stages.caption.contract import CaptionConfig

    result = load_captioner(CaptionConfig(max_image_side=448)).caption([cat_photo()], ["contentment"])[0]
    assert result.error is None, result
    assert "cat" in result.text.lower() and result.text.count(". ") == 0
