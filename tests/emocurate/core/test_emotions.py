import pytest

from emocurate.core.emotions import EMOART_EMOTIONS, EMOTIONS, POLARITY, check_emotions, polarity_of


def test_emoset_order_and_polarity():
    assert EMOTIONS.index("amusement") == 0 and EMOTIONS.index("sadness") == 7
    assert [polarity_of(e) for e in EMOTIONS] == ["positive"] * 4 + ["negative"] * 4
    assert set(POLARITY) == set(EMOTIONS)


def test_emoart_drops_excitement_and_disgust():
    assert EMOART_EMOTIONS == ("amusement", "awe", "contentment", "anger", "fear", "sadness")


def test_check_emotions_orders_and_rejects():
    assert check_emotions(["sadness", "awe"]) == ("awe", "sadness")
    with pytest.raises(ValueError, match="unknown emotion"):
        check_emotions(["joy"])
    with pytest.raises(ValueError, match="duplicates"):
        check_emotions(["awe", "awe"])
    with pytest.raises(ValueError, match="unknown emotion 'joy'"):
        polarity_of("joy")
