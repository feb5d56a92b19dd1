"""`evaluate` end to end on tiny backbones: known answers per emotion, results.json, report.md and the PNGs."""

import json

import numpy as np
import pytest
from PIL import Image

from emocurate.core.config import load
from emotrain.eval.config import EvalConfig
from emotrain.eval.evaluate import check_weights, evaluate, find_images

from tests.helpers.eval_weights import noise_images, solid_images
from tests.helpers.paths import REPO

EMOTIONS = ("amusement", "fear")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A real dataset (ClassLabel emotions, captions) and two models: `copy` = the real images, `other` = new noise.

    In `other`, amusement holds 6 copies of one image (zero diversity) and fear 6 different ones: any pair that
    crossed emotions would make amusement's LPIPS and Sem-D non-zero.
    """
    import datasets

    root = tmp_path_factory.mktemp("data")
    files, labels = [], []
    for k, emotion in enumerate(EMOTIONS):
        paths = noise_images(root / "copy" / emotion, 6, seed=10 + k)
        files += paths
        labels += [emotion] * len(paths)
    features = datasets.Features({"image": datasets.Image(), "emotion": datasets.ClassLabel(names=list(EMOTIONS)),
                                  "caption": datasets.Value("string")})
    ds = datasets.Dataset.from_dict(
        {"image": [str(p) for p in files], "emotion": labels, "caption": [f"a photo of {e}" for e in labels]},
        features=features)
    ds.save_to_disk(str(root / "real"))
    solid_images(root / "other" / "amusement", (30, 160, 60), 6)  # six identical images
    solid_images(root / "other" / "fear", (200, 50, 50), 6, jitter=40, seed=7)
    return root


def config(weights, data, tmp_path, metrics=("fid", "lpips", "sem_c", "sem_d", "clip_score")):
    return load(EvalConfig, None, [
        f"metrics=[{', '.join(metrics)}]", "device=cpu", f"real.dataset={data / 'real'}",
        f"fid.inception={weights['inception']}", f"fid.cache_dir={tmp_path / 'stats'}", "fid.batch_size=4",
        f"lpips.alexnet={weights['alexnet']}", "lpips.pairs=10", "sem_d.pairs=10", "clip.model=tiny:clip",
        f"sem_c.places365={weights['places']}", "sem_c.places_arch=resnet18", "sem_c.imagenet=tiny:resnet",
        "sem_c.image_size=32", "report.grid_images=3",
    ])


def test_evaluate_known_answers_and_outputs(weights, data, tmp_path):
    cfg = config(weights, data, tmp_path)
    bars = {}

    def progress(task, advance=0, total=None):
        bars.setdefault(task, {"done": 0})["done"] += advance
        if total is not None:
            bars[task]["total"] = total

    results = evaluate(cfg, {"copy": data / "copy", "other": data / "other"}, tmp_path / "report", progress=progress)
    copy, other = results["models"]["copy"], results["models"]["other"]
    for emotion in EMOTIONS:  # generated == real images of that emotion
        assert abs(copy["per_emotion"][emotion]["fid"]) < 1e-2
    assert abs(copy["overall"]["fid"]) < 1e-2
    assert other["overall"]["fid"] > 1.0
    amusement, fear = other["per_emotion"]["amusement"], other["per_emotion"]["fear"]
    assert amusement["lpips"] == pytest.approx(0, abs=1e-6) and amusement["sem_d"] == pytest.approx(0, abs=1e-9)
    assert fear["lpips"] > 0 and fear["sem_d"] > 0 and fear["sem_d_cos"] > 0
    assert amusement["lpips_pairs"] == 10 and amusement["sem_d_pairs"] == 10
    assert other["overall"]["lpips"] == pytest.approx((amusement["lpips"] + fear["lpips"]) / 2)
    # error bars around every metric; EmoGen's protocol beside ours ([0, 1] LPIPS inputs, 10 pairs)
    for entry in (copy, other):
        for key in ("fid", "lpips", "sem_c", "sem_d", "lpips_emogen", "sem_d_emogen"):
            low, high = entry["intervals"][key]
            assert low - 1e-9 <= entry["overall"][key] <= high + 1e-9 or key == "fid", key
            assert len(entry["bootstrap"][key]) == (100 if key == "fid" else 1000)
    assert amusement["lpips_emogen"] == pytest.approx(0, abs=1e-6) and fear["lpips_emogen"] > 0
    assert fear["lpips_emogen"] != pytest.approx(fear["lpips"])  # [0, 1] inputs give other distances
    for entry in (copy, other):
        assert 0 < entry["overall"]["sem_c"] <= 1 and 0 <= entry["overall"]["clip_score"] <= 100
        assert entry["overall"]["sem_c"] >= max(entry["overall"]["sem_c_places"], entry["overall"]["sem_c_imagenet"]) - 1e-9
    # every progress bar was advanced to its total
    assert set(bars) == {"FID", "LPIPS", "Sem-C", "CLIP embeddings"}
    assert all(bar["done"] == bar["total"] > 0 for bar in bars.values())

    settings = results["settings"]
    assert settings["real"]["images"] == {"amusement": 6, "fear": 6}
    assert settings["backbones"]["fid"]["mode"] == "clean" and settings["backbones"]["fid"]["real_stats_cached"] == []
    assert settings["backbones"]["clip_score"]["captions"]["fear"] == "column 'caption'"
    assert settings["libraries"]["torch"] and settings["libraries"]["clean-fid"]
    out = tmp_path / "report"
    written = json.loads((out / "results.json").read_text())
    assert written["models"]["other"]["overall"] == other["overall"]
    assert written["metrics_done"] == ["fid", "lpips", "sem_c", "sem_d", "clip_score"]
    report = (out / "report.md").read_text()
    assert "| Method | FID↓ | LPIPS↑ | Emo-A↑ | Sem-C↑ | Sem-D↑" not in report  # Emo-A not run: no empty column
    assert "| Method | FID↓ | LPIPS↑ | Sem-C↑ | Sem-D↑" in report and "| copy |" in report
    assert "reported in the paper" in report and "clean-fid" in report
    assert "## Which differences are significant" in report and "copy is significantly better than other" in report
    assert "## EmoGen's metric protocol, beside ours" in report and "LPIPS↑ (EmoGen protocol)" in report
    assert f"| copy | {copy['overall']['fid']:.2f} [" in report  # value [low, high]
    for name in ("metrics.png", "grid_amusement.png", "grid_fear.png"):
        assert Image.open(out / name).size[0] > 100

    # real statistics come from the cache the second time, with the same numbers
    again = evaluate(config(weights, data, tmp_path, metrics=("fid",)), {"copy": data / "copy", "other": data / "other"},
                     tmp_path / "report2")
    assert again["settings"]["backbones"]["fid"]["real_stats_cached"] == list(EMOTIONS)
    assert again["models"]["other"]["overall"]["fid"] == pytest.approx(other["overall"]["fid"])


def test_missing_weight_paths_are_named_before_any_work(data, tmp_path):
    cfg = load(EvalConfig, None, ["metrics=[fid, lpips, sem_c]", "lpips.alexnet=/nowhere/alexnet.pth"])
    with pytest.raises(FileNotFoundError) as err:
        evaluate(cfg, {"copy": data / "copy"}, tmp_path / "out")
    message = str(err.value)
    assert "fid.inception is not set" in message and "lpips.alexnet=/nowhere/alexnet.pth does not exist" in message
    assert "sem_c.places365 is not set" in message
    assert not (tmp_path / "out").exists()
    check_weights(load(EvalConfig, None, ["metrics=[sem_d]"]))  # Sem-D needs no local file


def test_image_folders_must_be_emotions(tmp_path):
    noise_images(tmp_path / "m" / "awe", 2, seed=0)
    noise_images(tmp_path / "m" / "grids", 2, seed=0)
    with pytest.raises(ValueError, match=r"\['grids'\] are not emotion names"):
        find_images("m", tmp_path / "m")
    noise_images(tmp_path / "n" / "awe", 1, seed=0)
    with pytest.raises(ValueError, match="at least 2 images"):
        find_images("n", tmp_path / "n")


def cli():
    from emotrain.cli import app  # the real command line: its errors become one `error:` line and an exit code

    return app


def test_cli_end_to_end_with_sd_baseline(weights, data, tmp_path):
    from typer.testing import CliRunner

    out = tmp_path / "report"
    args = ["eval", "--images", f"copy={data / 'copy'}", "--real", str(data / "real"), "--out", str(out),
            "--baseline", "sd", "--base-model", "tiny:sd", "-n", "2", "--steps", "2", "--gen-batch-size", "2",
            "--device", "cpu", "--scheduler", "euler",
            "metrics=[fid, lpips, sem_d, clip_score]", f"fid.inception={weights['inception']}",
            f"fid.cache_dir={tmp_path / 'stats'}", f"lpips.alexnet={weights['alexnet']}", "clip.model=tiny:clip"]
    result = CliRunner().invoke(cli(), args)
    assert result.exit_code == 0, result.output
    assert "report.md" in result.output
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"copy", "sd-baseline"}
    assert results["models"]["sd-baseline"]["images"] == {"amusement": 2, "fear": 2}  # emotions of --real
    generation = results["settings"]["generation"]
    assert generation["sd-baseline"]["prompt"] == "an image of {emotion}" and generation["settings"]["n"] == 2
    assert "| sd-baseline |" in (out / "report.md").read_text()
    assert generation["settings"]["scheduler"] == "euler"
    assert generation["sd-baseline"]["sampler"] == {"scheduler": "euler", "diffusers_class": "EulerDiscreteScheduler",
                                                    "steps": 2, "guidance": 7.5,
                                                    "adapters_on_unconditional": "n/a (no adapters)"}
    assert "**Sampling, sd-baseline**: `euler` (EulerDiscreteScheduler), 2 steps, guidance 7.5" in (out / "report.md").read_text()
    assert (out / "metrics.png").is_file() and (out / "grid_fear.png").is_file()


def test_missing_weights_fail_before_generating(data, tmp_path):
    from typer.testing import CliRunner

    result = CliRunner().invoke(cli(), ["eval", "--baseline", "sd", "--base-model", "tiny:sd", "--real", str(data / "real"),
                                        "--out", str(tmp_path / "out"), "metrics=[lpips]"])
    assert result.exit_code == 2
    assert "lpips.alexnet is not set" in result.output
    assert not (tmp_path / "out").exists()
    clash = CliRunner().invoke(cli(), ["eval", "--baseline", "sd", "--images", f"sd-baseline={data / 'copy'}",
                                       "--out", str(tmp_path / "out"), "metrics=[sem_d]"])
    assert clash.exit_code == 2 and "error: --images names ['sd-baseline'] are taken" in clash.output
    named = CliRunner().invoke(cli(), ["eval", "--config", "emoset", "--baseline", "sd", "--base-model", "tiny:sd",
                                       "--real", str(data / "real"), "--out", str(tmp_path / "out")])
    assert named.exit_code == 2 and "weights/inception-2015-12-05.pt" in named.output  # the shipped config, by name


def test_sd_baseline_samples_with_the_eval_scheduler_not_the_pipeline_default(tmp_path):
    """Table-1 rows must differ by method only: the SD baseline uses the same scheduler as our rows (default
    DPM-Solver++), not the pipeline's own PNDM."""
    import numpy as np
    from diffusers import DPMSolverMultistepScheduler

    from emotrain.eval.baseline import generate_baseline, load_pipeline
    from emotrain.eval.generate import GenerateSettings, generate_images

    folders, record = generate_images(tmp_path / "eval", ["awe"], GenerateSettings(n=1, steps=3, device="cpu"),
                                      baseline_model="tiny:sd")
    assert record["sd-baseline"]["sampler"]["scheduler"] == "dpm-solver++"
    ours = np.asarray(Image.open(folders["sd-baseline"] / "awe" / "00000.png"))
    pipe = load_pipeline("tiny:sd", device="cpu")
    assert type(pipe.scheduler).__name__ != "DPMSolverMultistepScheduler"  # PNDM in SD 1.5, DDPM in tiny:sd
    default = np.asarray(Image.open(generate_baseline(pipe, "awe", 1, 0, tmp_path / "default", steps=3)[0]))
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    dpm = np.asarray(Image.open(generate_baseline(pipe, "awe", 1, 0, tmp_path / "dpm", steps=3)[0]))
    assert np.array_equal(ours, dpm) and not np.array_equal(ours, default)


def test_sd_baseline_resumes_with_the_same_images(tmp_path):
    from emotrain.eval.baseline import generate_baseline, load_pipeline

    pipe = load_pipeline("tiny:sd", device="cpu")
    paths = generate_baseline(pipe, "awe", 3, seed=5, out_dir=tmp_path, steps=2, batch_size=2)
    assert [p.name for p in paths] == ["00000.png", "00001.png", "00002.png"]
    first, second = paths[0].stat().st_mtime_ns, paths[1].read_bytes()
    paths[1].unlink()
    done = []
    generate_baseline(pipe, "awe", 3, seed=5, out_dir=tmp_path, steps=2, batch_size=2, progress=done.append)
    assert paths[1].read_bytes() == second  # the same seed per image gives the same image
    assert paths[0].stat().st_mtime_ns == first  # existing images are kept
    assert sum(done) == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["00000.png", "00001.png", "00002.png"]


COLOURS = {"amusement": (250, 200, 0), "awe": (0, 60, 250), "contentment": (40, 200, 60), "excitement": (250, 40, 40),
           "anger": (120, 0, 0), "disgust": (110, 120, 0), "fear": (10, 10, 10), "sadness": (150, 150, 170)}


@pytest.fixture(scope="module")
def colour_probe(tmp_path_factory):
    """A CLIP linear probe right by construction on solid colours: its head maps each colour's tiny-CLIP embedding
    exactly to a one-hot logit vector (solved in closed form), in emocurate's probe format."""
    from emocurate.stages.clip_embed import HFClipEncoder
    from emocurate.stages.probe import Probe, save_probe

    from emocurate.core.emotions import EMOTIONS as ALL

    encoder = HFClipEncoder("tiny:clip", device="cpu")
    emb = encoder.images([Image.new("RGB", (40, 40), COLOURS[e]) for e in ALL]).astype(np.float64)  # (8, 32), unit rows
    weight = (np.linalg.pinv(emb) @ (10.0 * np.eye(len(ALL)))).T  # (8, 32): emb @ weight.T = 10 * I
    folder = tmp_path_factory.mktemp("probe")
    save_probe(Probe("tiny:clip", None, ALL, emb.shape[1], weight, np.zeros(len(ALL)), np.zeros(emb.shape[1]),
                     np.ones(emb.shape[1])), folder)
    return folder


def test_emotion_accuracy_with_a_classifier_right_by_construction(colour_probe, tmp_path):
    from tests.helpers.eval_weights import solid_images

    right, swapped = tmp_path / "right", tmp_path / "swapped"
    for emotion in ("amusement", "awe", "fear"):
        solid_images(right / emotion, COLOURS[emotion], 3)
    solid_images(swapped / "amusement", COLOURS["anger"], 3)  # wrong emotion, wrong polarity
    solid_images(swapped / "awe", COLOURS["contentment"], 3)  # wrong emotion, right polarity
    solid_images(swapped / "fear", COLOURS["fear"], 3)
    cfg = load(EvalConfig, None, ["metrics=[emo_a]", "device=cpu", "emo_a.model=tiny:clip", f"emo_a.probe={colour_probe}"])
    results = evaluate(cfg, {"right": right, "swapped": swapped}, tmp_path / "report")
    assert results["models"]["right"]["overall"]["emo_a"] == 1.0
    assert results["models"]["right"]["overall"]["emo_a_polarity"] == 1.0
    assert results["models"]["right"]["overall"]["emo_a_target_prob"] > 0.99
    per = results["models"]["swapped"]["per_emotion"]
    assert (per["amusement"]["emo_a"], per["amusement"]["emo_a_polarity"]) == (0.0, 0.0)
    assert (per["awe"]["emo_a"], per["awe"]["emo_a_polarity"]) == (0.0, 1.0)
    assert results["models"]["swapped"]["overall"]["emo_a"] == pytest.approx(1 / 3)
    assert results["models"]["swapped"]["overall"]["emo_a_polarity"] == pytest.approx(2 / 3)
    backbone = results["settings"]["backbones"]["emo_a"]
    assert backbone["classes"] == list(COLOURS) and backbone["emo_a"] == "8-way accuracy (argmax)"
    assert "| right | 100.00% |" in (tmp_path / "report" / "report.md").read_text()


def test_shipped_eval_recipe_loads():
    from pathlib import Path

    cfg = load(EvalConfig, REPO / "recipes" / "eval" / "emoset.yaml")
    assert cfg.metrics == ["fid", "lpips", "emo_a", "sem_c", "sem_d", "clip_score"]
    assert cfg.emo_a.backend == "clip-probe" and cfg.clip.model == "openai/clip-vit-large-patch14"
    with pytest.raises(ValueError, match="metrics must be"):
        load(EvalConfig, None, ["metrics=[fid, psnr]"])


def test_cli_generates_with_a_trained_run_then_evaluates(request, weights, tmp_path):
    """`--model RUN -n N`: our model's images per emotion into OUT/images/<run>/<emotion>/, resumable, then scored."""
    from typer.testing import CliRunner

    run = request.getfixturevalue("trained_run")  # tests/emotrain/conftest.py: a 4-step tiny run
    real = request.getfixturevalue("tiny_dataset")  # its training data: amusement, awe, anger, sadness
    out = tmp_path / "report"
    args = ["eval", "--model", str(run), "-n", "2", "--steps", "2", "--emotions", "awe,anger", "--real", real,
            "--out", str(out), "--device", "cpu", "metrics=[lpips, sem_d]", f"lpips.alexnet={weights['alexnet']}",
            "clip.model=tiny:clip"]
    result = CliRunner().invoke(cli(), args)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["models"][run.name]["images"] == {"awe": 2, "anger": 2}
    sampler = results["settings"]["generation"][run.name]["sampler"]
    assert sampler["scheduler"] == "dpm-solver++" and sampler["adapters_on_unconditional"] is True
    first = sorted((out / "images" / run.name / "awe").glob("*.png"))
    stamps = [p.stat().st_mtime_ns for p in first]
    assert CliRunner().invoke(cli(), args).exit_code == 0  # a rerun keeps the images it has
    assert [p.stat().st_mtime_ns for p in first] == stamps


def test_every_model_id_is_checked_before_generating(data, tmp_path, monkeypatch):
    """`--baseline sd` with a model that is neither local nor cached: one error line naming each id, nothing generated."""
    from typer.testing import CliRunner

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    result = CliRunner().invoke(cli(), ["eval", "--baseline", "sd", "--base-model", "nobody/missing-sd", "--real",
                                        str(data / "real"), "--out", str(tmp_path / "out"), "-n", "2",
                                        "metrics=[sem_d]", "clip.model=nobody/missing-clip"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    message = " ".join(result.output.split())
    assert message.startswith("error: model(s) not available, nothing was generated")
    assert "--base-model 'nobody/missing-sd': not in the local Hugging Face cache" in message
    assert "clip.model 'nobody/missing-clip'" in message
    assert not (tmp_path / "out").exists()
    run = CliRunner().invoke(cli(), ["eval", "--model", str(tmp_path / "no-run"), "--out", str(tmp_path / "out"),
                                     "metrics=[sem_d]", "clip.model=tiny:clip"])
    assert run.exit_code == 2 and "not a trained run (no config.json)" in run.output
