import dataclasses
import json
import logging
import time

import pytest
from PIL import Image

from emocurate.stages.caption import load_captioner
from emocurate.stages.caption.contract import (
    PROMPTS, CaptionConfig, CaptionResult, clean_caption, downscale, first_sentence, prompt_text,
)
from tests.helpers.chat_server import FakeChatServer

PAPER_PROMPT = (
    "This image evokes a strong emotion of fear. Provide a one-sentence caption that vividly describes the visual details, "
    "focusing on elements like brightness, colorfulness, scene type, object classes, facial expressions, and human actions "
    "that effectively convey and express this emotion."
)


# ---- prompts and config ---------------------------------------------------------------------------------------

def test_paper_prompt_is_the_default():
    assert CaptionConfig().prompt == "emotion-one-sentence"
    assert prompt_text("emotion-one-sentence", "fear") == PAPER_PROMPT


def test_the_four_prompt_variants_of_table_2a():
    assert set(PROMPTS) == {"emotion-one-sentence", "plain-one-sentence", "plain-detailed", "emotion-detailed"}
    for name in PROMPTS:
        text = prompt_text(name, "awe")
        assert ("awe" in text) == name.startswith("emotion-")
        assert ("one-sentence" in text) == name.endswith("one-sentence")
        assert ("as much detail as possible" in text) == name.endswith("detailed")
    assert prompt_text("plain-detailed", None) == PROMPTS["plain-detailed"]
    with pytest.raises(ValueError, match="needs the image's emotion"):
        prompt_text("emotion-detailed", None)
    assert CaptionConfig(prompt="emotion-detailed").one_sentence is False
    assert CaptionConfig(prompt="plain-one-sentence").one_sentence is True


@pytest.mark.parametrize("kwargs, message", [
    (dict(prompt="short"), "caption.prompt must be one of emotion-one-sentence, plain-one-sentence"),
    (dict(backend="sglang"), "caption.backend must be 'transformers' or 'openai'"),
    (dict(max_new_tokens=0), "caption.max_new_tokens must be an integer >= 1"),
    (dict(max_image_side=10), "caption.max_image_side must be an integer >= 28"),
    (dict(temperature=-1.0), "caption.temperature must be a number >= 0"),
    (dict(timeout_s=0), "caption.timeout_s must be a number > 0"),
    (dict(max_retries=-1), "caption.max_retries must be an integer >= 0"),
    (dict(concurrency=0), "caption.concurrency must be an integer >= 1"),
    (dict(dtype="fp8"), "caption.dtype must be one of"),
    (dict(device="gpu0"), "caption.device must be"),
    (dict(base_url="127.0.0.1:8000/v1"), "caption.base_url must start with http"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CaptionConfig(**kwargs)


def test_a_key_pasted_into_api_key_env_is_rejected_without_echoing_it():
    with pytest.raises(ValueError) as err:
        CaptionConfig(api_key_env="sk-live-abc123-secret")
    assert "NAME of an environment variable" in str(err.value) and "sk-live" not in str(err.value)


def test_downscale_caps_the_longer_side():
    assert downscale(Image.new("RGB", (2000, 1000)), 768).size == (768, 384)
    assert downscale(Image.new("RGBA", (100, 50)), 768).size == (100, 50)
    assert downscale(Image.new("L", (300, 900)), 300).mode == "RGB"


# ---- cleaning -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("A child laughs on a sunny beach.", "A child laughs on a sunny beach."),
    ("  Caption: A child laughs on a sunny beach.  ", "A child laughs on a sunny beach."),
    ('"A child laughs on a sunny beach."', "A child laughs on a sunny beach."),
    ("“A child laughs on a sunny beach.”", "A child laughs on a sunny beach."),
    ("**Caption:** *A child* laughs on a `sunny` beach.", "A child laughs on a sunny beach."),
    ("Sure! Here is a one-sentence caption for the image:\n\n\"A child laughs on a sunny beach.\"",
     "A child laughs on a sunny beach."),
    ("A child laughs on a sunny beach.<|im_end|><|endoftext|>", "A child laughs on a sunny beach."),
    ("assistant\nA child laughs on a sunny beach. The sky is blue.", "A child laughs on a sunny beach."),
    ("A dark room, e.g. a cellar, where Mr. Smith hides. He is afraid.", "A dark room, e.g. a cellar, where Mr. Smith hides."),
    ("A 3.5 m wave crashes over the pier! People run.", "A 3.5 m wave crashes over the pier!"),
    ("A portrait by J. M. W. Turner glows in gold. Next sentence.", "A portrait by J. M. W. Turner glows in gold."),
    ("- A child laughs on a sunny beach\n- Second bullet", "A child laughs on a sunny beach"),
    ("# Caption\nA child laughs.", "A child laughs."),
    ("One-sentence caption:\nA child laughs.", "A child laughs."),
    ("A caption-less poster hangs in a dark hall.", "A caption-less poster hangs in a dark hall."),
    ("A child's kite soars over the 'quiet' bay.", "A child's kite soars over the 'quiet' bay."),
    ('The sign reads "danger" in red letters.', 'The sign reads "danger" in red letters.'),
    ("A woman smiles (softly.) Then she leaves.", "A woman smiles (softly.)"),
    ("\x08creloom\ufffd co", "creloom co"),
    ("<think>The user wants one sentence. Fear: dark.</think>\nA dark hallway.", "A dark hallway."),
    ("Caption for the image: A dark hallway.", "A dark hallway."),
    ("Here's a one-sentence caption that vividly describes the visual details and conveys the emotion of fear:\n"
     "A dark hallway.", "A dark hallway."),
    ("   ", ""),
    ("<|im_end|>", ""),
    ('""', ""),
])
def test_clean_caption_one_sentence(raw, expected):
    assert clean_caption(raw) == expected


def test_clean_caption_detailed_keeps_every_sentence():
    raw = "Here is a detailed description:\n\nA bright beach.\nChildren play.  The sea is calm."
    assert clean_caption(raw, one_sentence=False) == "A bright beach. Children play. The sea is calm."


def test_first_sentence_without_a_full_stop():
    assert first_sentence("a dog in the rain") == "a dog in the rain"
    assert first_sentence("Wait... what? yes") == "Wait..."


# ---- transformers backend with the tiny Qwen2.5-VL --------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_captioner():
    return load_captioner(CaptionConfig(model="tiny:captioner", device="cpu", batch_size=3, max_new_tokens=12))


def colours():
    return [Image.new("RGB", (120, 80), c) for c in ("red", "navy", "green", "white", "black")]


def test_tiny_captioner_generates_through_the_chat_model(tiny_captioner):
    assert tiny_captioner.backend == "transformers" and tiny_captioner.model_id == "tiny:captioner"
    assert tiny_captioner.revision is None
    assert tiny_captioner.prompt_text("fear") == PAPER_PROMPT
    results = tiny_captioner.caption(colours(), ["fear", "awe", "anger", "sadness", "amusement"])
    assert len(results) == 5 and all(isinstance(r, CaptionResult) for r in results)
    for r in results:
        assert r.raw is not None  # the model said something
        assert (r.text is None) == (r.error is not None)
        if r.text is not None:
            assert r.text == clean_caption(r.raw) and r.text.strip() == r.text
        else:
            assert r.error == "empty caption"
    assert sum(r.text is not None for r in results) >= 3  # random noise, but mostly non-empty noise
    # greedy decoding is deterministic
    again = tiny_captioner.caption(colours(), ["fear", "awe", "anger", "sadness", "amusement"])
    assert [r.raw for r in again] == [r.raw for r in results]


def test_one_bad_image_is_a_result_not_an_exception(tiny_captioner):
    images = colours()[:2] + [Image.new("RGB", (1, 400), "red"), None] + colours()[2:3]  # aspect ratio 400: the processor refuses
    results = tiny_captioner.caption(images, ["fear", "awe", "anger", "sadness", None])
    assert results[0].raw is not None and results[1].raw is not None
    assert results[2].text is None and "aspect ratio" in results[2].error
    assert results[3].error == "ValueError: no image"
    assert "needs the image's emotion" in results[4].error
    # the batch retried one by one gives the same captions as a clean batch
    clean = tiny_captioner.caption(colours()[:2], ["fear", "awe"])
    assert [r.raw for r in clean] == [r.raw for r in results[:2]]
    with pytest.raises(ValueError, match="one emotion"):
        tiny_captioner.caption(colours(), ["fear"])
    assert tiny_captioner.caption([], []) == []


def test_batched_generation_equals_one_by_one(tiny_captioner):
    # prompts of different lengths (emotion words, image sizes -> image tokens): only left padding keeps them equal
    images = [Image.new("RGB", (120, 80), "red"), Image.new("RGB", (30, 30), "blue"), Image.new("RGB", (56, 200), "green")]
    emotions = ["contentment", "awe", "excitement"]
    batched = tiny_captioner.caption(images, emotions)
    single = load_captioner(CaptionConfig(model="tiny:captioner", device="cpu", batch_size=1, max_new_tokens=12))
    assert [r.raw for r in single.caption(images, emotions)] == [r.raw for r in batched]


def test_sampling_is_seeded():
    cfg = dict(model="tiny:captioner", device="cpu", max_new_tokens=10, temperature=1.0)
    a = load_captioner(CaptionConfig(seed=1, **cfg)).caption(colours()[:2], ["awe", "fear"])
    b = load_captioner(CaptionConfig(seed=1, **cfg)).caption(colours()[:2], ["awe", "fear"])
    c = load_captioner(CaptionConfig(seed=2, **cfg)).caption(colours()[:2], ["awe", "fear"])
    assert [r.raw for r in a] == [r.raw for r in b]
    assert [r.raw for r in a] != [r.raw for r in c]


# ---- openai backend against a loopback server -----------------------------------------------------------------

SECRET = "sk-test-7f3a9c-do-not-leak"


@pytest.fixture
def server():
    s = FakeChatServer()
    yield s
    s.close()


def test_openai_backend_retries_records_and_never_leaks_the_key(server, monkeypatch, caplog):
    monkeypatch.setenv("EMOCURATE_TEST_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    cfg = CaptionConfig(backend="openai", model="served-model", base_url=server.url, api_key_env="EMOCURATE_TEST_KEY",
                        concurrency=4, timeout_s=0.8, max_retries=2, retry_base_s=0.05, max_image_side=64)
    captioner = load_captioner(cfg)
    images = [Image.new("RGB", (400, 200), c) for c in ("red", "blue", "green", "gray", "black", "white", "yellow", "pink")]
    emotions = ["amusement", "awe", "contentment", "anger", "fear", "disgust", None, "excitement"]
    results = captioner.caption(images, emotions)

    assert results[0] == CaptionResult("A amusement scene glows softly.", None,
                                       'Caption: "A amusement scene glows softly." Extra sentence.')
    assert results[1].text == "A awe scene glows softly." and server.count("awe") == 2  # 429, then success
    assert results[2].text == "A contentment scene glows softly." and server.count("contentment") == 2  # 500, then success
    assert results[3].text is None and results[3].error.startswith("HTTP 400: bad image") and server.count("anger") == 1
    assert "timeout after 0.8 s" in results[4].error and "3 attempts" in results[4].error and server.count("fear") == 3
    assert results[5] == CaptionResult(None, "empty caption", "  **  **  ")
    assert "needs the image's emotion" in results[6].error and server.count(None) == 0
    assert results[7].text is None and results[7].error and server.count("excitement") == 1  # recorded, not retried
    assert captioner.requests_sent == len(server.requests) == 1 + 2 + 2 + 1 + 3 + 1 + 1

    # every request carried the key in its header, and the image as a downscaled JPEG data URL
    assert {r["auth"] for r in server.requests} == {f"Bearer {SECRET}"}
    assert {r["path"] for r in server.requests} == {"/v1/chat/completions"}
    assert all(r["model"] == "served-model" and r["max_tokens"] == 96 for r in server.requests)
    import base64
    import io
    url = server.requests[0]["image_url"]
    assert url.startswith("data:image/jpeg;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size == (64, 32)

    # ...and nowhere else
    assert "***" in results[3].error
    for text in [repr(r) for r in results] + [caplog.text, repr(captioner), repr(cfg), json.dumps(dataclasses.asdict(cfg))]:
        assert SECRET not in text


def test_openai_backend_sends_no_auth_header_without_a_key(server, monkeypatch):
    monkeypatch.delenv("EMOCURATE_ABSENT_KEY", raising=False)
    cfg = CaptionConfig(backend="openai", base_url=server.url, api_key_env="EMOCURATE_ABSENT_KEY", prompt="plain-one-sentence")
    results = load_captioner(cfg).caption([Image.new("RGB", (10, 10))], [None])
    assert results[0].text == "A plain scene glows softly." and server.requests[0]["auth"] is None


def test_openai_backend_works_when_called_inside_an_event_loop(server):
    import asyncio

    captioner = load_captioner(CaptionConfig(backend="openai", base_url=server.url))

    async def notebook_cell():  # Jupyter runs cells inside a loop; asyncio.run() alone would refuse
        return captioner.caption([Image.new("RGB", (10, 10))], ["amusement"])

    assert asyncio.run(notebook_cell())[0].text == "A amusement scene glows softly."


def test_openai_backend_honours_retry_after_over_its_own_backoff(server):
    # a 30 s backoff would blow the time budget below: the server's Retry-After: 0 must win
    cfg = CaptionConfig(backend="openai", base_url=server.url, retry_base_s=30.0, max_retries=1)
    start = time.monotonic()
    results = load_captioner(cfg).caption([Image.new("RGB", (10, 10))], ["awe"])
    assert results[0].text == "A awe scene glows softly." and server.count("awe") == 2
    assert time.monotonic() - start < 5


def test_openai_backend_connection_errors_are_retried_then_recorded():
    import socket

    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = CaptionConfig(backend="openai", base_url=f"http://127.0.0.1:{port}/v1", max_retries=2, retry_base_s=0.01)
    captioner = load_captioner(cfg)
    results = captioner.caption([Image.new("RGB", (10, 10))] * 2, ["awe", "fear"])
    assert all(r.text is None and r.error.startswith("connection error") and "3 attempts" in r.error for r in results)
    assert captioner.requests_sent == 6


def test_openai_backend_runs_requests_concurrently_within_the_bound(server):
    cfg = CaptionConfig(backend="openai", base_url=server.url, concurrency=3)
    start = time.monotonic()
    results = load_captioner(cfg).caption([Image.new("RGB", (10, 10))] * 9, ["sadness"] * 9)
    elapsed = time.monotonic() - start
    assert all(r.text == "A sadness scene glows softly." for r in results)
    assert server.max_in_flight == 3  # concurrent, and never more than `concurrency`
    assert elapsed < 1.75  # 3 waves of 0.2 s; 9 requests one after another cannot take under 1.8 s


def test_retry_after_parsing():
    from email.utils import format_datetime
    from datetime import datetime, timedelta, timezone

    from emocurate.stages.caption.openai import _retry_after

    assert _retry_after("2") == 2.0 and _retry_after(None) is None and _retry_after("soon") is None
    assert _retry_after("100000") == 60.0
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 < _retry_after(later) <= 30
