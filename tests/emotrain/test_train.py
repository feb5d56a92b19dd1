import json

import pytest
import torch
from safetensors.torch import load_file

from emotrain.train import train


def _weights(run):
    out = {f"hilora.{k}": v for k, v in load_file(str(run / "hilora.safetensors")).items()}
    for name in ("mapper", "encoder"):
        out.update({f"{name}.{k}": v for k, v in load_file(str(run / name / "diffusion_pytorch_model.safetensors")).items()})
    return out


@pytest.mark.parametrize("shape", [["optim.batch_size=2"], ["optim.batch_size=1", "optim.gradient_accumulation=2"]],
                         ids=["batch2", "accumulate2"])
def test_resume_equals_uninterrupted_run(tmp_path, tiny_dataset, shape, tiny_recipe):
    recipe = tiny_recipe("optim.max_steps=4", *shape)
    straight = train(recipe, tiny_dataset, tmp_path / "straight")
    stopped = train(recipe, tiny_dataset, tmp_path / "resumed", max_steps=2)
    assert json.loads((stopped / "config.json").read_text())["steps"] == 2
    resumed = train(recipe, tiny_dataset, tmp_path / "resumed", resume="latest")

    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys() and any(".emotion." in k for k in a) and any(".polarity." in k for k in a)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    # training moved the adapters: LoRA B starts at zero
    assert any(v.abs().sum() > 0 for k, v in a.items() if "lora_B" in k)
    # rotation: the last 2 of 4 checkpoints kept, nothing half-written left behind
    assert sorted(p.name for p in (straight / "checkpoints").iterdir()) == ["checkpoint-3", "checkpoint-4"]
    state = json.loads((resumed / "checkpoints" / "checkpoint-4" / "state.json").read_text())
    assert state["step"] == 4 and state["position"] == 8  # 4 steps x 2 samples either way
    assert state["emotions"] == ["amusement", "awe", "anger", "sadness"] and state["num_processes"] == 1


def test_sigterm_checkpoints_then_resume_matches(tmp_path, tiny_dataset, tiny_recipe):
    import os
    import signal

    from emotrain.train import TrainingStopped

    recipe = tiny_recipe("optim.max_steps=4", "run.checkpoint_every=100")
    straight = train(recipe, tiny_dataset, tmp_path / "straight")

    def kill_at_two(step, total, info):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # as a cluster scheduler preempting the job would

    with pytest.raises(TrainingStopped, match="stopped by signal at step 2/4.*--resume latest"):
        train(recipe, tiny_dataset, tmp_path / "stopped", progress=kill_at_two)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    assert [p.name for p in (tmp_path / "stopped" / "checkpoints").iterdir()] == ["checkpoint-2"]
    resumed = train(recipe, tiny_dataset, tmp_path / "stopped", resume="latest")
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_resume_with_other_batch_settings_is_refused(tmp_path, tiny_dataset, tiny_recipe):
    train(tiny_recipe("optim.max_steps=1"), tiny_dataset, tmp_path / "r")
    with pytest.raises(ValueError, match="global micro-batch of 2; this run has .* and 1"):
        train(tiny_recipe("optim.max_steps=2", "optim.batch_size=1"), tiny_dataset, tmp_path / "r", resume="latest")


def test_gradient_checkpointing_gives_the_same_weights(tmp_path, tiny_dataset, tiny_recipe):
    plain = train(tiny_recipe("optim.max_steps=2"), tiny_dataset, tmp_path / "plain")
    ckpt = train(tiny_recipe("optim.max_steps=2", "run.gradient_checkpointing=true"), tiny_dataset, tmp_path / "ckpt")
    a, b = _weights(plain), _weights(ckpt)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key


def test_run_folder_outputs(trained_run):
    config = json.loads((trained_run / "config.json").read_text())
    assert config["emotions"] == ["amusement", "awe", "anger", "sadness"]
    assert config["polarity"]["anger"] == "negative" and config["base_model"]["id"] == "tiny:sd"
    assert config["recipe"]["optim"]["lr"] == 1e-3 and config["recipe"]["loss"]["semantic"] is True
    assert config["oversampling"] == {"before": {"amusement": 8, "awe": 6, "anger": 6, "sadness": 4},
                                      "after": {"amusement": 8, "awe": 8, "anger": 8, "sadness": 8}}
    assert json.loads((trained_run / "oversampling.json").read_text())["after"]["sadness"] == 8
    card = (trained_run / "README.md").read_text()
    for emotion in config["emotions"]:
        assert f"](samples/{emotion}.png)" in card and (trained_run / "samples" / f"{emotion}.png").is_file()
    assert (trained_run / "validation" / "step-00000004.png").is_file()
    # the card names the sampler its samples used (the one `emotrain generate` uses on this run)
    assert "Sampler: dpm-solver++ (DPMSolverMultistepScheduler), 2 steps, guidance 7.5" in card
    assert config["recipe"]["run"]["scheduler"] == "dpm-solver++"
    keys = load_file(str(trained_run / "hilora.safetensors")).keys()
    assert any(k.endswith("emotion.awe.lora_A.weight") for k in keys)
    assert any(k.endswith("polarity.negative.lora_B.weight") for k in keys)


def test_ablations_train(tmp_path, tiny_dataset, tiny_recipe):
    """No L_SEM + no polarity LoRAs + text emotion input; learnable input + MSE L_SEM + no emotion LoRAs."""
    run = train(tiny_recipe("optim.max_steps=1", "loss.semantic=false", "hilora.polarity_loras=false",
                            "emotion_input=text"), tiny_dataset, tmp_path / "a")
    assert not any(".polarity." in k for k in load_file(str(run / "hilora.safetensors")))
    run = train(tiny_recipe("optim.max_steps=1", "loss.semantic_type=mse", "hilora.emotion_loras=false",
                            "emotion_input=learnable"), tiny_dataset, tmp_path / "b")
    assert not any(".emotion." in k for k in load_file(str(run / "hilora.safetensors")))


def test_fresh_run_into_a_used_folder_is_refused(trained_run, tiny_dataset, tiny_recipe):
    with pytest.raises(ValueError, match="already holds a run: continue it with --resume latest"):
        train(tiny_recipe("optim.max_steps=1"), tiny_dataset, trained_run)


def test_resume_latest_falls_back_past_a_truncated_checkpoint(tmp_path, tiny_dataset, tiny_recipe, caplog):
    from emotrain import checkpoint

    recipe = tiny_recipe("optim.max_steps=3")
    run = train(recipe, tiny_dataset, tmp_path / "run")  # keeps checkpoint-2 and checkpoint-3
    hilora = run / "checkpoints" / "checkpoint-3" / "hilora.safetensors"
    hilora.write_bytes(hilora.read_bytes()[:1000])  # a copy gone wrong
    with caplog.at_level("INFO", logger="emotrain"):
        train(recipe, tiny_dataset, run, resume="latest")
    assert "checkpoint-3 is damaged (hilora.safetensors unreadable" in caplog.text
    assert "checkpoint-2 at step 2" in caplog.text  # resumed from the newest intact one and redid step 3
    assert checkpoint.damage(run / "checkpoints" / "checkpoint-3") is None


def test_never_routed_adapters_stay_bit_identical(tmp_path, make_dataset, tiny_recipe):
    """Paper: only the LoRAs of the sample's emotion and polarity are updated. On negative-only data the positive
    polarity LoRA is never routed: after training (AdamW with weight decay) its A and B are bit-identical to their
    initial values in every layer, while the routed adapters moved."""
    from accelerate.utils import set_seed
    from diffusers import UNet2DConditionModel

    from emocurate.core.tiny import resolve
    from emotrain.model.hilora import add_hilora, hilora_state_dict

    data = make_dataset(tmp_path / "negative", emotions=["anger", "sadness"], counts=[4, 3])
    recipe = tiny_recipe("optim.max_steps=3", "optim.weight_decay=0.1", "run.checkpoint_every=100")
    run = train(recipe, data, tmp_path / "run")
    trained = load_file(str(run / "hilora.safetensors"))

    set_seed(recipe.run.seed)  # train.py seeds right before add_hilora: the same initial adapters
    unet = UNet2DConditionModel.from_pretrained(resolve(recipe.model.pretrained), subfolder="unet")
    add_hilora(unet, ["anger", "sadness"], rank=recipe.hilora.rank, alpha=recipe.hilora.alpha,
               target_modules=tuple(recipe.hilora.target_modules))
    initial = hilora_state_dict(unet)
    assert trained.keys() == initial.keys()
    never = [k for k in initial if ".polarity.positive." in k]
    assert never and all(torch.equal(trained[k], initial[k]) for k in never)
    assert any(initial[k].abs().sum() > 0 for k in never if "lora_A" in k)  # A is not trivially zero
    routed = [k for k in initial if ".polarity.negative." in k or ".emotion." in k]
    assert all(not torch.equal(trained[k], initial[k]) for k in routed if "lora_B" in k)
