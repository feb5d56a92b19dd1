"""Secrets a run used never reach the published dataset, the saved recipe or the card; push refuses a folder holding one.

The caption endpoint is the loopback OpenAI-compatible server of the caption tests, told to echo the API key (and the
Hub token) into every caption."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from emocurate.publish.secrets import find_in_folder, redact_folder, redact_table, strip_credentials
from emocurate.recipe import CurateRecipe, load_recipe
from emocurate.run import driver as pipeline
from emocurate.run.folder import save_recipe
from emocurate.run.publish import push_run, recipe_for_publishing
from tests.helpers.chat_server import FakeChatServer
from tests.helpers.images import jpeg
from tests.helpers.paths import REPO

KEY = "sk-echo-4b1d-do-not-publish"
HUB_TOKEN = "hf_echoedHubToken0123456789"


def test_strip_credentials_and_redact_a_table():
    assert strip_credentials("http://user:sk-abc12345@host:8000/v1") == "http://host:8000/v1"
    assert strip_credentials("https://host/v1") == "https://host/v1"
    table = pa.table({"caption": [f"a {KEY} b", None, "clean"], "n": [1, 2, 3]})
    redacted, n = redact_table(table, {"$K": KEY})
    assert n == 1 and redacted.column("caption").to_pylist() == ["a [REDACTED] b", None, "clean"]


def test_redact_folder_reads_compressed_parquet_and_text(tmp_path):
    pq.write_table(pa.table({"caption": [f"x {KEY}"] * 50}), tmp_path / "d.parquet", compression="zstd")
    (tmp_path / "README.md").write_text(f"key {KEY}\n")
    assert find_in_folder(tmp_path, {"$K": KEY}) == ["README.md: $K", "d.parquet: $K"]
    assert redact_folder(tmp_path, {"$K": KEY}) == ["README.md", "d.parquet"]
    assert find_in_folder(tmp_path, {"$K": KEY}) == [] and "[REDACTED]" in (tmp_path / "README.md").read_text()


def test_credentials_in_base_url_are_not_saved_or_published(tmp_path):
    recipe = load_recipe(None, ["sources=[demo]", "caption.base_url=http://me:sk-cred-7777777@127.0.0.1:8000/v1"])
    save_recipe(tmp_path, recipe)
    saved = (tmp_path / "recipe.yaml").read_text()
    assert "sk-cred-7777777" not in saved and "http://127.0.0.1:8000/v1" in saved
    assert recipe_for_publishing(recipe)["caption"]["base_url"] == "http://127.0.0.1:8000/v1"
    assert recipe.caption.base_url.startswith("http://me:")  # the running build still has them


def test_an_echoing_caption_endpoint_leaks_nothing_into_the_published_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOCURATE_ECHO_KEY", KEY)
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    images = tmp_path / "images"
    for i, emotion in enumerate(["awe", "fear", "awe", "sadness"]):
        (images / emotion).mkdir(parents=True, exist_ok=True)
        (images / emotion / f"{i}.jpg").write_bytes(jpeg(40 + i))
    server = FakeChatServer(echo=True, leak=HUB_TOKEN)
    try:
        recipe = load_recipe(REPO / "recipes" / "curate" / "demo.yaml", [
            f"sources=[folder:{images}]", "caption.backend=openai", f"caption.base_url={server.url}",
            "caption.api_key_env=EMOCURATE_ECHO_KEY", "caption.max_retries=0", "clip_filter.drop_fraction=0"])
        summary = pipeline.build(recipe, tmp_path / "run")
    finally:
        server.close()
    run = tmp_path / "run"
    assert {r["auth"] for r in server.requests} == {f"Bearer {KEY}"} and summary["kept"] == 4
    # the endpoint echoed the key into every caption: the captioner redacts it before anything is stored
    assert find_in_folder(run, {"$EMOCURATE_ECHO_KEY": KEY}) == []
    captions = pq.read_table(run / "records.parquet").column("caption").to_pylist()
    assert all("auth Bearer [REDACTED]" in c for c in captions)
    # the Hub token came back too (the captioner does not know it): the publish scan redacts it in every published file
    published = pq.read_table(run / "dataset" / "data").column("caption").to_pylist()
    assert all(HUB_TOKEN not in c and "[REDACTED]" in c for c in published)
    assert find_in_folder(run / "dataset", {"$HF_TOKEN": HUB_TOKEN, "$K": KEY}) == []
    assert "were redacted to [REDACTED]" in (run / "dataset" / "README.md").read_text()
    # a secret that reached the folder anyway (copied in by hand): push refuses before any network call
    with (run / "dataset" / "README.md").open("a") as card:
        card.write(f"\nnote: {HUB_TOKEN}\n")
    with pytest.raises(ValueError, match=r"refusing to push .*README.md: the Hugging Face token") as err:
        push_run(run, "user/name")
    assert HUB_TOKEN not in str(err.value)
