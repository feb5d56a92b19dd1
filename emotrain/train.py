"""CoEmoGen training, written out top to bottom (diffusers-example style) with accelerate.

Frozen: VAE, CLIP image encoder, text encoder, UNet. Trained: Neuro-symbolic Mapper, Visual-perception Encoder, HiLoRA.
Loss: L_LDM + lambda * L_SEM. Single GPU, multi-GPU and multi-node through `accelerate launch` with no code change
(multi-node needs the run folder on a shared filesystem). Attention runs through diffusers' default SDPA processor.
It does not parse the command line (cli.py) or sample for users (generate.py).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

from emocurate.core.filemode import follow_umask
from emotrain.cache_shards import CacheProgress
from emocurate.core.hub import hub_revision
from emotrain.recipe import TrainRecipe, loader_workers

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, dict], None]
"""progress(step, total_steps, info): info holds loss, loss_ldm, loss_sem (main process only)."""


def train(
    recipe: TrainRecipe,
    dataset: str,
    out_dir: str | Path,
    max_steps: int | None = None,
    resume: str | None = None,
    progress: Progress | None = None,
    cache_progress: CacheProgress | None = None,
) -> Path:
    """Train CoEmoGen on `dataset` into the run folder `out_dir`; returns the folder. `resume`: 'latest' or a path.
    `cache_progress(task, advance, total)` follows the feature-cache precompute (rank 0 only)."""
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import ProjectConfiguration, broadcast_object_list, set_seed
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTextModel, CLIPTokenizer

    from emocurate.core.config import to_dict
    from emocurate.core.emotions import POLARITY
    from emocurate.core.tiny import resolve
    from emotrain import cache, cache_shards, checkpoint
    from emotrain.card import write_card
    from emotrain.model.clusters import ClusterAccumulator, EmotionClusters, pick_sample
    from emotrain.model.conditioning import build_emotion_modules, encode_with_emotion, image_tokens, semantic_loss, word_embeddings
    from emotrain.data import ClipImages, ResumableSampler, TrainingSet, collate, load_training_dataset, oversample, validate
    from emotrain.generate import EmotionSampler, save_grid
    from emotrain.sampling import make_pipeline
    from emotrain.optimizer import adamw_class
    from emotrain.model.hilora import add_hilora, hilora_parameters, hilora_state_dict, load_hilora_state_dict, set_routing

    out = Path(out_dir)
    run, optim = recipe.run, recipe.optim
    total_steps = max_steps or optim.max_steps
    accelerator = Accelerator(
        mixed_precision=run.mixed_precision,
        gradient_accumulation_steps=optim.gradient_accumulation,
        log_with=None if run.report_to == "none" else run.report_to,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        # Only the adapters of the emotions in a batch get gradients: the others are unused in that step.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    main = accelerator.is_main_process
    if accelerator.device.type == "cpu" and run.cpu_threads:
        torch.set_num_threads(run.cpu_threads)
    if accelerator.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = run.allow_tf32
    resume_from = checkpoint.find(out / "checkpoints", resume) if resume else None
    if resume_from is None and (checkpoint.checkpoints(out / "checkpoints") or (out / "config.json").exists()):
        raise ValueError(f"{out} already holds a run: continue it with --resume latest, or train into a new folder")

    # ---- data: load, validate (one error listing every problem), oversample --------------------------------------
    with accelerator.main_process_first():  # one download; the other ranks read the datasets cache
        raw = load_training_dataset(dataset, recipe.data.split)
    validated = validate(raw, recipe.data)
    emotions = validated.emotions
    if recipe.data.oversample:
        indices, before, after = oversample(validated.labels, emotions, run.seed)
    else:
        indices = [i for i, label in enumerate(validated.labels) if label in emotions]
        before = after = {e: validated.labels.count(e) for e in emotions}
    logger.info("emotions (%s): %s (%d); samples per emotion before %s, after oversampling %s",
                validated.emotions_from, ", ".join(emotions), len(emotions), before, after)
    if main:  # the run folder is made only once its data was found and validated
        out.mkdir(parents=True, exist_ok=True)
        (out / "oversampling.json").write_text(json.dumps({"before": before, "after": after, "seed": run.seed}, indent=2) + "\n")

    # ---- models: frozen VAE / text encoder / UNet / CLIP image encoder; trained Mapper, Encoder, HiLoRA ----------
    # Rank 0 first: it downloads (or builds a tiny model) once; the other ranks then read the cache.
    with accelerator.main_process_first():
        base, rev = resolve(recipe.model.pretrained), recipe.model.revision
        clip_id, clip_rev = resolve(recipe.model.clip), recipe.model.clip_revision
        tokenizer = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer", revision=rev)
        text_encoder = CLIPTextModel.from_pretrained(base, subfolder="text_encoder", revision=rev)
        vae = AutoencoderKL.from_pretrained(base, subfolder="vae", revision=rev)
        unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet", revision=rev)
        noise_scheduler = DDPMScheduler.from_pretrained(base, subfolder="scheduler", revision=rev)
        clip = CLIPModel.from_pretrained(clip_id, revision=clip_rev)
        vision, text_projection = clip.vision_model, clip.text_projection  # the text tower is SD's text encoder
        processor = CLIPImageProcessor.from_pretrained(clip_id, revision=clip_rev)
        del clip
    weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[run.mixed_precision]
    for module in (vae, text_encoder, unet, vision, text_projection):
        module.requires_grad_(False)
        module.to(accelerator.device)
        if weight_dtype != torch.float32:
            module.to(dtype=weight_dtype)
    vae.eval()
    vision.eval()

    set_seed(run.seed)  # identical initialisation on every rank
    h = recipe.hilora
    add_hilora(unet, emotions, rank=h.rank, alpha=h.alpha, target_modules=tuple(h.target_modules),
               emotion_loras=h.emotion_loras, polarity_loras=h.polarity_loras)
    adapter_params = hilora_parameters(unet)
    for p in adapter_params:  # trained weights stay float32 under mixed precision
        p.data = p.data.float()
        p.requires_grad_(True)
    text_dim, image_dim = text_encoder.config.hidden_size, vision.config.hidden_size
    mapper, encoder = build_emotion_modules(len(emotions), text_dim, image_dim, recipe.conditioning.mapper_hidden,
                                            recipe.conditioning.d0, recipe.emotion_input)
    if recipe.emotion_input == "text":
        mapper.set_word_embeddings(word_embeddings(text_encoder, tokenizer, emotions))
    mapper.to(accelerator.device)
    encoder.to(accelerator.device)
    if run.gradient_checkpointing:
        unet.enable_gradient_checkpointing()  # diffusers: non-reentrant checkpoints (safe under DDP)
        no_reentrant = {"use_reentrant": False}
        if hasattr(text_encoder, "activation_checkpointing_enable"):  # transformers >= 5
            text_encoder.activation_checkpointing_enable(activation_checkpointing_kwargs=no_reentrant)
        else:
            text_encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs=no_reentrant)
    text_encoder.train(run.gradient_checkpointing)  # transformers checkpoints only in train mode; CLIP has no dropout
    if run.channels_last:
        unet.to(memory_format=torch.channels_last)
        vae.to(memory_format=torch.channels_last)
    if run.compile_unet:
        unet.compile()  # in place: same module, same state-dict keys (checkpoints and HiLoRA routing unchanged)
    unet.train()  # SD's UNet has no dropout; HiLoRA neither

    optimizer = adamw_class(optim.adam_8bit)(
        [*mapper.parameters(), *encoder.parameters(), *adapter_params],
        lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay, eps=optim.eps,
    )

    # ---- emotion clusters from the training images (once; kept across resumes) -----------------------------------
    crop = processor.crop_size  # a dict-like {"height", "width"} (SizeDict in transformers 5)
    clip_size = int(getattr(crop, "height", None) or crop["height"])
    training_set = TrainingSet(validated, recipe.data, tokenizer, clip_size, processor.image_mean, processor.image_std)
    on_gpu = accelerator.device.type == "cuda"
    num_workers = loader_workers(recipe.data, on_gpu)

    # ---- feature cache: the frozen encoders' outputs, computed once (emotrain/cache.py) ----------------------------
    latent_size = recipe.data.resolution // 2 ** (len(vae.config.block_out_channels) - 1)
    layout = cache.Layout(latent_shape=(vae.config.latent_channels, latent_size, latent_size),
                          token_shape=((vision.config.image_size // vision.config.patch_size) ** 2 + 1, image_dim),
                          caption_dim=text_projection.out_features if recipe.loss.semantic else None,
                          views=(False, True) if recipe.data.random_flip else (False,))
    cached_rows = sorted(set(indices))
    features = None
    if recipe.data.cache != "off":
        key = cache.make_key(recipe, validated, training_set, cached_rows, weight_dtype, recipe.loss.semantic)
        encoders = cache_shards.Encoders(vae, vision, text_encoder, text_projection, accelerator.device, weight_dtype)
        features = cache.prepare(accelerator, recipe.data, training_set, cached_rows, encoders, key, layout,
                                 cache_progress if main else None)
    cached_tokens = features is not None and features.layout.token_shape is not None
    if cached_tokens:  # the image tower is not run again (clusters come from the cache): its GPU memory goes back
        vision.to("cpu")

    clusters_path = out / "emotion_clusters.safetensors"
    reuse = resume_from is not None and clusters_path.exists()  # a fresh run always recomputes them
    if not broadcast_object_list([reuse])[0]:  # rank 0's view of the (shared) run folder decides
        # Each rank embeds a shard of the images (or reads them back from the cache); the float64 sums and the picked
        # token sets are added up across ranks.
        picks = pick_sample(validated.labels, emotions, recipe.clusters.sample_images, run.seed)
        acc = ClusterAccumulator(emotions, picks, recipe.clusters.components)
        if cached_tokens:  # read back, not re-encoded
            mine = cached_rows[accelerator.process_index::accelerator.num_processes]
            for rows_, tokens in cache_shards.token_batches(features, mine, run.cluster_batch_size):
                acc.add(tokens.to(accelerator.device, weight_dtype),
                        [emotions[training_set.emotion_index[r]] for r in rows_], list(rows_))
        else:
            shard = list(range(accelerator.process_index, len(training_set), accelerator.num_processes))
            loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ClipImages(training_set), shard),
                                                 batch_size=run.cluster_batch_size, num_workers=num_workers)
            seen = 0
            with torch.no_grad():
                for pixels, emotion_index in loader:
                    rows, seen = shard[seen:seen + len(emotion_index)], seen + len(emotion_index)  # loader keeps order
                    keep = emotion_index >= 0
                    tokens = image_tokens(vision, pixels[keep].to(accelerator.device, weight_dtype))  # (b, T, Dv)
                    acc.add(tokens, [emotions[int(k)] for k in emotion_index[keep]],
                            [r for r, k in zip(rows, keep.tolist()) if k])
        token_shape = ((vision.config.image_size // vision.config.patch_size) ** 2 + 1, vision.config.hidden_size)
        totals = [accelerator.reduce(t.to(accelerator.device), "sum") for t in acc.totals(token_shape)]
        picked = {e: accelerator.reduce(acc.picked(e, token_shape).to(accelerator.device), "sum") for e in emotions}
        if main:
            acc.merge(*totals, picked)
            acc.finish().save(clusters_path)
    accelerator.wait_for_everyone()
    clusters = EmotionClusters.load(clusters_path) if main else None  # only rank 0 samples (validation, card)

    # ---- resume ---------------------------------------------------------------------------------------------------
    step, position = 0, 0
    micro_batch = optim.batch_size * accelerator.num_processes  # samples read per micro-step, all ranks together
    if resume_from is not None:
        state, tensors = checkpoint.load(accelerator, resume_from)
        if state.get("emotions", emotions) != emotions or state.get("micro_batch", micro_batch) != micro_batch:
            raise ValueError(
                f"checkpoint {resume_from} was trained on emotions {state.get('emotions')} with a global micro-batch of "
                f"{state.get('micro_batch')}; this run has {emotions} and {micro_batch}: resume with the same data "
                "and batch settings, or start a new run folder")
        load_hilora_state_dict(unet, tensors["hilora"])
        mapper.load_state_dict(tensors["mapper"])
        encoder.load_state_dict(tensors["encoder"])
        checkpoint.load_optimizer(optimizer, resume_from)
        step, position = state["step"], state["position"]
        logger.info("resumed from %s at step %d", resume_from, step)
    else:
        set_seed(run.seed + 1 + accelerator.process_index)  # noise / timesteps differ across ranks

    # DDP refuses a module with nothing to train: the "text" emotion input's mapper is a frozen table.
    if any(p.requires_grad for p in mapper.parameters()):
        unet, mapper, encoder, optimizer = accelerator.prepare(unet, mapper, encoder, optimizer)
    else:
        unet, encoder, optimizer = accelerator.prepare(unet, encoder, optimizer)
    raw_unet = accelerator.unwrap_model(unet)

    sampler = ResumableSampler(indices, run.seed, optim.batch_size, accelerator.process_index,
                               accelerator.num_processes, start=position, flip=recipe.data.random_flip)
    served = training_set if features is None else cache_shards.CachedTrainingSet(training_set, features)
    loader = torch.utils.data.DataLoader(served, batch_size=optim.batch_size, sampler=sampler, collate_fn=collate,
                                         num_workers=num_workers, pin_memory=on_gpu, persistent_workers=num_workers > 0,
                                         generator=torch.Generator().manual_seed(run.seed))  # leaves the global RNG alone
    data = iter(loader)

    def emotion_sampler() -> EmotionSampler:
        pipe = make_pipeline(vae, text_encoder, tokenizer, raw_unet, noise_scheduler.config, run.scheduler)
        return EmotionSampler(pipe, accelerator.unwrap_model(mapper), accelerator.unwrap_model(encoder), clusters,
                              emotions, recipe.conditioning.prompt, autocast=accelerator.autocast, scheduler=run.scheduler)

    def validation_grid(at_step: int) -> None:
        """One image per emotion with fixed seeds, from the training UNet switched to eval mode (no copy)."""
        raw_unet.eval()
        images = emotion_sampler()([{e: 1.0} for e in emotions], list(range(len(emotions))), None,
                                   run.inference_steps, run.guidance)
        raw_unet.train()
        save_grid(images, (out / "validation").joinpath(f"step-{at_step:08d}.png"))
        tracker = accelerator.get_tracker("tensorboard", unwrap=True) if run.report_to == "tensorboard" else None
        if tracker is not None:
            import numpy as np

            tracker.add_images("validation", np.stack([np.asarray(im) for im in images]), at_step, dataformats="NHWC")

    if run.report_to != "none":
        accelerator.init_trackers("emotrain", config=_flat(to_dict(recipe)))
    if main:
        (out / "validation").mkdir(exist_ok=True)

    # ---- training loop --------------------------------------------------------------------------------------------
    started, first_step = time.perf_counter(), step
    info: dict = {}
    stop = StopRequest().install()  # SIGTERM / first Ctrl-C: finish the step, checkpoint, stop (resume later)
    try:
        while step < total_steps:
            batch = next(data)
            position += micro_batch
            with accelerator.accumulate(unet, mapper, encoder):
                emotion = batch["emotion"].to(accelerator.device)  # (B,)
                onehot = F.one_hot(emotion, len(emotions)).float()  # (B, E)
                with torch.no_grad():  # cached tensors where the cache holds them, else the frozen encoders
                    if "latent_mean" in batch:  # a fresh draw each step, the same random numbers as latent_dist.sample()
                        mean, std = (batch[k].to(accelerator.device, weight_dtype, non_blocking=True)
                                     for k in ("latent_mean", "latent_std"))  # (B, 4, R/8, R/8)
                        latents = cache_shards.sample_latents(mean, std) * vae.config.scaling_factor
                    else:
                        pixels = batch["pixel_values"].to(accelerator.device, weight_dtype)  # (B, 3, R, R)
                        latents = vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor  # (B, 4, R/8, R/8)
                    if "image_tokens" in batch:
                        v = batch["image_tokens"].to(accelerator.device, weight_dtype, non_blocking=True)  # (B, T, Dv)
                    else:
                        clip_pixels = batch["clip_pixel_values"].to(accelerator.device, weight_dtype)  # (B, 3, S, S)
                        v = image_tokens(vision, clip_pixels)  # (B, T, Dv)
                    if recipe.loss.semantic and "caption_embeds" in batch:
                        caption = batch["caption_embeds"].to(accelerator.device, weight_dtype, non_blocking=True)  # (B, P)
                    elif recipe.loss.semantic:
                        caption_ids = batch["caption_ids"].to(accelerator.device)
                        caption = text_projection(text_encoder(input_ids=caption_ids).pooler_output)  # (B, P) = T(c_i)
                # contiguous: the VAE may return channels-last latents, and randn_like would then draw in another order
                noise = torch.randn_like(latents, memory_format=torch.contiguous_format)
                timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],),
                                          device=latents.device)
                noisy = noise_scheduler.add_noise(latents, noise, timesteps)
                if noise_scheduler.config.prediction_type == "v_prediction":
                    target = noise_scheduler.get_velocity(latents, noise, timesteps)
                else:
                    target = noise
                with accelerator.autocast():
                    e_v = encoder(mapper(onehot), v)  # (B, D): e_i^v
                    condition, pooled = encode_with_emotion(text_encoder, tokenizer, e_v, recipe.conditioning.prompt)
                    set_routing(raw_unet, onehot)  # per-sample emotion + polarity adapters (Eq. 3)
                    pred = unet(noisy, timesteps, condition).sample
                    loss_ldm = F.mse_loss(pred.float(), target.float())
                    loss = loss_ldm
                    if recipe.loss.semantic:
                        loss_sem = semantic_loss(text_projection(pooled), caption, recipe.loss.semantic_type)
                        loss = loss + recipe.loss.semantic_weight * loss_sem
                accelerator.backward(loss)
                if accelerator.sync_gradients and optim.max_grad_norm:
                    params = [p for group in optimizer.param_groups for p in group["params"]]
                    accelerator.clip_grad_norm_(params, optim.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            step += 1
            # Logged losses are the mean over ranks (a collective every rank reaches), not rank 0's alone.
            parts = [loss, loss_ldm] + ([loss_sem] if recipe.loss.semantic else [])
            means = accelerator.reduce(torch.stack([p.detach().float() for p in parts]), "mean").tolist()
            info = dict(zip(["loss", "loss_ldm", "loss_sem"], means))
            if step % run.log_every == 0 or step == total_steps:
                accelerator.log({**info, "lr": optim.lr}, step=step)
            if main and progress:
                progress(step, total_steps, info)
            stopping = stop.agreed(accelerator)
            if step % run.checkpoint_every == 0 or step == total_steps or stopping:
                modules = {"hilora": hilora_state_dict(raw_unet),
                           "mapper": accelerator.unwrap_model(mapper).state_dict(),
                           "encoder": accelerator.unwrap_model(encoder).state_dict()}
                saved = checkpoint.save(accelerator, out / "checkpoints", step, position, modules, optimizer,
                                        run.keep_checkpoints, extra={"emotions": emotions, "micro_batch": micro_batch})
            if stopping:
                accelerator.end_training()
                raise TrainingStopped(f"stopped by signal at step {step}/{total_steps}; checkpoint {saved}; continue "
                                      "with --resume latest")
            if run.validate_every and step % run.validate_every == 0 and main:
                validation_grid(step)
    finally:
        stop.uninstall()
    elapsed = time.perf_counter() - started
    set_routing(raw_unet, None)

    # ---- outputs --------------------------------------------------------------------------------------------------
    accelerator.wait_for_everyone()
    if main:
        save_file({k: v.detach().float().contiguous().cpu() for k, v in hilora_state_dict(raw_unet).items()},
                  str(out / "hilora.safetensors"), metadata={"emotions": ",".join(emotions)})
        accelerator.unwrap_model(mapper).save_pretrained(out / "mapper")
        accelerator.unwrap_model(encoder).save_pretrained(out / "encoder")
        for written in ("hilora.safetensors", "mapper", "encoder"):
            follow_umask(out / written)  # safetensors writes 0600
        config = {
            "emotions": emotions,
            "polarity": {e: POLARITY[e] for e in emotions},
            "base_model": {"id": recipe.model.pretrained, "revision": rev,
                           "resolved_revision": hub_revision(recipe.model.pretrained, rev, "model_index.json")},
            "clip": {"id": recipe.model.clip, "revision": clip_rev,
                     "resolved_revision": hub_revision(recipe.model.clip, clip_rev, "config.json")},
            "dataset": dataset,
            "steps": step,
            "samples_seen": position,
            "text_dim": text_dim,
            "image_dim": image_dim,
            "image_tokens": int(clusters.mean[emotions[0]].shape[0]),  # CLS + patches per image
            "oversampling": {"before": before, "after": after},
            "steps_per_second": (step - first_step) / elapsed if elapsed > 0 and step > first_step else None,
            "recipe": to_dict(recipe),
        }
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        samples = {}
        if run.samples_per_emotion:
            raw_unet.eval()
            sampler_ = emotion_sampler()
            (out / "samples").mkdir(exist_ok=True)
            for e in emotions:
                images = sampler_([{e: 1.0}] * run.samples_per_emotion, list(range(run.samples_per_emotion)), None,
                                  run.inference_steps, run.guidance)
                samples[e] = save_grid(images, out / "samples" / f"{e}.png").relative_to(out).as_posix()
        write_card(out, config, samples)
    accelerator.end_training()
    return out


class TrainingStopped(RuntimeError):
    """Training ended early on SIGTERM / Ctrl-C after writing a checkpoint; the message says how to resume."""


class StopRequest:
    """Turns SIGTERM and the first SIGINT into a request honoured at the next step boundary (a second SIGINT
    interrupts at once). Every rank must agree before stopping, so all write the same checkpoint."""

    def __init__(self):
        self.signal: int | None = None
        self.previous: dict = {}

    def install(self) -> "StopRequest":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():  # signals can only be caught there
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        import signal

        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    def uninstall(self) -> None:
        import signal

        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def agreed(self, accelerator) -> bool:
        """True when any rank was asked to stop (one tiny all-reduce per step under several processes)."""
        if accelerator.num_processes == 1:
            return self.signal is not None
        import torch

        flag = torch.tensor([1.0 if self.signal is not None else 0.0], device=accelerator.device)
        return bool(accelerator.reduce(flag, "sum").item() > 0)


def _flat(d: dict, prefix: str = "") -> dict:
    """Nested recipe -> flat {a.b: scalar} for trackers (lists become strings)."""
    flat = {}
    for k, v in d.items():
        if isinstance(v, dict):
            flat.update(_flat(v, f"{prefix}{k}."))
        else:
            flat[prefix + k] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return flat


def steps_per_second(out_dir: str | Path) -> float | None:
    """The training speed recorded in a run's config.json."""
    return json.loads((Path(out_dir) / "config.json").read_text()).get("steps_per_second")

