"""Fit a Table 1 baseline on an emotion dataset, written out top to bottom like diffusers' examples (accelerate).

Textual inversion (diffusers' examples/textual_inversion): one new token `<emotion>` per emotion, initialised from the
emotion word's embedding; only those embedding rows learn (the others are restored after every step, as the example
does). DreamBooth (examples/dreambooth, full fine-tune, no prior preservation): one UNet learns every emotion, the
prompt naming it. Both read the same oversampled data as CoEmoGen, checkpoint and resume the same way. It does not sample.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from emotrain.baselines.recipe import BaselineRecipe
from emotrain.recipe import loader_workers
from emocurate.core.hub import hub_revision
from emotrain.train import Progress, StopRequest, TrainingStopped

logger = logging.getLogger(__name__)


def fit_baseline(recipe: BaselineRecipe, dataset: str, out_dir: str | Path, max_steps: int | None = None,
                 resume: str | None = None, progress: Progress | None = None) -> Path:
    """Train the baseline `recipe.method` on `dataset` into `out_dir`; `resume`: 'latest' or a checkpoint folder."""
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel, CLIPTokenizer

    from emocurate.core.config import to_dict
    from emocurate.core.tiny import resolve
    from emotrain import checkpoint
    from emotrain.data import ResumableSampler, TrainingSet, collate, load_training_dataset, oversample, validate

    out = Path(out_dir)
    run, optim = recipe.run, recipe.optim
    total_steps = max_steps or optim.max_steps
    accelerator = Accelerator(mixed_precision=run.mixed_precision, gradient_accumulation_steps=optim.gradient_accumulation)
    main = accelerator.is_main_process
    if accelerator.device.type == "cpu" and run.cpu_threads:
        torch.set_num_threads(run.cpu_threads)
    if main:
        out.mkdir(parents=True, exist_ok=True)
    resume_from = checkpoint.find(out / "checkpoints", resume) if resume else None
    if resume_from is None and (checkpoint.checkpoints(out / "checkpoints") or (out / "config.json").exists()):
        raise ValueError(f"{out} already holds a run: continue it with --resume latest, or train into a new folder")

    # ---- data: the same validation and oversampling as CoEmoGen ----------------------------------------------------
    with accelerator.main_process_first():
        raw = load_training_dataset(dataset, recipe.data.split)
    validated = validate(raw, recipe.data)
    emotions = validated.emotions
    indices, before, after = (oversample(validated.labels, emotions, run.seed) if recipe.data.oversample else
                              ([i for i, label in enumerate(validated.labels) if label in emotions], None, None))

    # ---- models ----------------------------------------------------------------------------------------------------
    with accelerator.main_process_first():
        base, rev = resolve(recipe.model.pretrained), recipe.model.revision
        tokenizer = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer", revision=rev)
        text_encoder = CLIPTextModel.from_pretrained(base, subfolder="text_encoder", revision=rev)
        vae = AutoencoderKL.from_pretrained(base, subfolder="vae", revision=rev)
        unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet", revision=rev)
        noise_scheduler = DDPMScheduler.from_pretrained(base, subfolder="scheduler", revision=rev)
    weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[run.mixed_precision]
    tokens = [recipe.token(e) for e in emotions]
    textual_inversion = recipe.method == "textual-inversion"
    set_seed(run.seed)
    if textual_inversion:
        token_ids = add_emotion_tokens(tokenizer, text_encoder, emotions, tokens)
        embeddings = text_encoder.get_input_embeddings()
        original = embeddings.weight.detach().clone()  # rows of every other token, restored after each step
        keep = torch.ones(len(tokenizer), dtype=torch.bool)
        keep[token_ids] = False
        for module in (vae, unet):
            module.requires_grad_(False)
            module.to(accelerator.device, dtype=weight_dtype)
        text_encoder.requires_grad_(False)
        embeddings.weight.requires_grad_(True)
        text_encoder.to(accelerator.device)  # float32: its embedding table learns
        trained = [embeddings.weight]
    else:
        for module in (vae, text_encoder):
            module.requires_grad_(False)
            module.to(accelerator.device, dtype=weight_dtype)
        unet.to(accelerator.device)  # float32 master weights; autocast runs the maths in weight_dtype
        unet.requires_grad_(True)
        trained = list(unet.parameters())
    if run.gradient_checkpointing and not textual_inversion:
        unet.enable_gradient_checkpointing()
    vae.eval()
    text_encoder.train(False)  # CLIP has no dropout; TI's gradient still flows through the frozen layers
    unet.train(not textual_inversion)
    optimizer = torch.optim.AdamW(trained, lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay,
                                  eps=optim.eps)
    prompt_ids = tokenizer([recipe.prompt.format(emotion=t) for t in tokens], padding="max_length", truncation=True,
                           max_length=tokenizer.model_max_length, return_tensors="pt").input_ids.to(accelerator.device)

    # ---- resume ----------------------------------------------------------------------------------------------------
    step, position = 0, 0
    micro_batch = optim.batch_size * accelerator.num_processes
    if resume_from is not None:
        state, tensors = checkpoint.load(accelerator, resume_from)
        if state.get("emotions") != emotions or state.get("micro_batch") != micro_batch:
            raise ValueError(f"checkpoint {resume_from} was trained on {state.get('emotions')} with a global micro-batch "
                             f"of {state.get('micro_batch')}; this run has {emotions} and {micro_batch}")
        if textual_inversion:
            with torch.no_grad():
                embeddings.weight[token_ids] = tensors["embeddings"]["rows"].to(embeddings.weight)
        else:
            unet.load_state_dict(tensors["unet"])
        checkpoint.load_optimizer(optimizer, resume_from)
        step, position = state["step"], state["position"]
        logger.info("resumed from %s at step %d", resume_from, step)
    else:
        set_seed(run.seed + 1 + accelerator.process_index)
    model = text_encoder if textual_inversion else unet
    model, optimizer = accelerator.prepare(model, optimizer)
    text_encoder, unet = (model, unet) if textual_inversion else (text_encoder, model)

    # No CLIP image is used: the smallest CLIP crop keeps TrainingSet's shared code path cheap.
    training_set = TrainingSet(validated, recipe.data, tokenizer, 8, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    sampler = ResumableSampler(indices, run.seed, optim.batch_size, accelerator.process_index,
                               accelerator.num_processes, start=position, flip=recipe.data.random_flip)
    data = iter(torch.utils.data.DataLoader(training_set, batch_size=optim.batch_size, sampler=sampler, collate_fn=collate,
                                            num_workers=loader_workers(recipe.data, accelerator.device.type == "cuda"),
                                            generator=torch.Generator().manual_seed(run.seed)))

    # ---- training loop ---------------------------------------------------------------------------------------------
    started, first_step = time.perf_counter(), step
    stop = StopRequest().install()
    try:
        while step < total_steps:
            batch = next(data)
            position += micro_batch
            with accelerator.accumulate(model):
                with torch.no_grad():
                    pixels = batch["pixel_values"].to(accelerator.device, weight_dtype)  # (B, 3, R, R)
                    latents = vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor  # (B, 4, R/8, R/8)
                noise = torch.randn_like(latents)
                timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],),
                                          device=latents.device)
                noisy = noise_scheduler.add_noise(latents, noise, timesteps)
                target = (noise_scheduler.get_velocity(latents, noise, timesteps)
                          if noise_scheduler.config.prediction_type == "v_prediction" else noise)
                with accelerator.autocast():
                    condition = text_encoder(prompt_ids[batch["emotion"].to(accelerator.device)])[0]  # (B, L, D)
                    pred = unet(noisy, timesteps, condition.to(weight_dtype)).sample
                    loss = F.mse_loss(pred.float(), target.float())
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if textual_inversion:  # only the emotion tokens' rows may change (weight decay touches every row)
                    with torch.no_grad():
                        embeddings.weight[keep] = original[keep].to(embeddings.weight)
            if not accelerator.sync_gradients:
                continue
            step += 1
            info = {"loss": accelerator.reduce(loss.detach().float(), "mean").item()}
            if main and progress:
                progress(step, total_steps, info)
            stopping = stop.agreed(accelerator)
            if step % run.checkpoint_every == 0 or step == total_steps or stopping:
                modules = ({"embeddings": {"rows": embeddings.weight[token_ids].detach()}} if textual_inversion
                           else {"unet": accelerator.unwrap_model(unet).state_dict()})
                saved = checkpoint.save(accelerator, out / "checkpoints", step, position, modules, optimizer,
                                        run.keep_checkpoints, extra={"emotions": emotions, "micro_batch": micro_batch})
            if stopping:
                raise TrainingStopped(f"stopped by signal at step {step}/{total_steps}; checkpoint {saved}; continue "
                                      "with --resume latest")
    finally:
        stop.uninstall()
    elapsed = time.perf_counter() - started

    # ---- outputs: standard formats any diffusers pipeline loads ----------------------------------------------------
    accelerator.wait_for_everyone()
    if main:
        if textual_inversion:
            (out / "embeddings").mkdir(exist_ok=True)
            for emotion, token, row in zip(emotions, tokens, embeddings.weight[token_ids].detach().float().cpu()):
                # diffusers' / A1111's single-token format: `pipe.load_textual_inversion(path)` adds the token
                save_file({token: row.contiguous()}, str(out / "embeddings" / f"{emotion}.safetensors"))
        else:
            accelerator.unwrap_model(unet).save_pretrained(out / "unet")
        config = {
            "method": recipe.method,
            "emotions": emotions,
            "tokens": dict(zip(emotions, tokens)),
            "prompt": recipe.prompt,
            "base_model": {"id": recipe.model.pretrained, "revision": rev,
                           "resolved_revision": hub_revision(recipe.model.pretrained, rev, "model_index.json")},
            "dataset": dataset,
            "steps": step,
            "samples_seen": position,
            "oversampling": {"before": before, "after": after},
            "steps_per_second": (step - first_step) / elapsed if elapsed > 0 and step > first_step else None,
            "recipe": to_dict(recipe),
        }
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")  # written last: the run is complete
    accelerator.end_training()
    return out


def add_emotion_tokens(tokenizer, text_encoder, emotions: list[str], tokens: list[str]) -> list[int]:
    """Add one token per emotion and initialise its embedding with the mean embedding of the emotion word's tokens."""
    import torch

    added = tokenizer.add_tokens(tokens)
    if added != len(tokens):
        raise ValueError(f"the tokenizer already knows some of {tokens}: pick another prompt token")
    text_encoder.resize_token_embeddings(len(tokenizer))
    weight = text_encoder.get_input_embeddings().weight
    ids = tokenizer.convert_tokens_to_ids(tokens)
    with torch.no_grad():
        for emotion, new in zip(emotions, ids):
            word = tokenizer(emotion, add_special_tokens=False).input_ids
            weight[new] = weight[word].mean(0)
    return ids
