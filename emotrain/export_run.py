"""Export one emotion (or a fusion mix) of a trained run as a stock LoRA + textual-inversion embedding.

The embedding is e^v = Encoder(Mapper(one-hot), v) with v the emotion cluster's mean (plus, for several vectors,
seeded draws from the cluster); `emotrain.export.export_emotion` writes the files. It does not train or sample.
"""

from __future__ import annotations

import json
from pathlib import Path


def emotion_embeddings(sampler, mix: dict[str, float], num_vectors: int = 1, seed: int = 0):
    """(n, D) textual-inversion vectors: row 0 from the cluster means, rows 1.. from seeded cluster draws."""
    import torch

    from emotrain.model.conditioning import emotion_weights

    weights = emotion_weights(sampler.emotions, mix)
    device = next(sampler.encoder.parameters()).device
    rows = []
    with torch.no_grad():
        for j in range(num_vectors):
            parts = []
            for k, emotion in enumerate(sampler.emotions):
                if weights[k] == 0:
                    continue
                if j == 0:
                    v = sampler.clusters.mean[emotion][None]  # (1, T, Dv)
                else:
                    v = sampler.clusters.sample(emotion, 1, generator=torch.Generator().manual_seed(seed * 1009 + j))
                onehot = torch.nn.functional.one_hot(torch.tensor([k]), len(sampler.emotions)).float().to(device)
                parts.append(weights[k] * sampler.encoder(sampler.mapper(onehot), v.to(device)).float())
            rows.append(torch.stack(parts).sum(0))
    return torch.cat(rows)  # (n, D)


def export_run(model_dir: str | Path, emotion: str | dict[str, float], out_dir: str | Path, fmt: str = "diffusers",
               token: str | None = None, num_vectors: int = 1, seed: int = 0) -> list[Path]:
    """Write `<emotion> LoRA + <token>.safetensors + README.md` into out_dir; return their paths."""
    from emotrain.export import export_emotion
    from emotrain.generate import load_run

    if num_vectors < 1:
        raise ValueError(f"num_vectors must be >= 1; got {num_vectors}")
    mix = {emotion: 1.0} if isinstance(emotion, str) else dict(emotion)
    sampler = load_run(model_dir, device="cpu")
    unknown = [e for e in mix if e not in sampler.emotions]
    if unknown:
        raise ValueError(f"emotion(s) {unknown} not in this model; it knows: {', '.join(sampler.emotions)}")
    token = token or "<" + "-".join(mix) + ">"
    embeddings = emotion_embeddings(sampler, mix, num_vectors, seed)
    from emocurate.core.tiny import resolve
    from emotrain.sampling import DEFAULT_SCHEDULER, sampler_record

    config = json.loads((Path(model_dir) / "config.json").read_text())
    base, run = config["base_model"], config["recipe"]["run"]
    local = Path(base["id"]).exists() or base["id"].startswith("tiny:")  # the README names what from_pretrained loads
    base_model = str(Path(resolve(base["id"])).resolve()) if local else base["id"]
    revision = None if local else base.get("resolved_revision") or base.get("revision")
    record = sampler_record(run.get("scheduler", DEFAULT_SCHEDULER), run["inference_steps"], run["guidance"])
    return export_emotion(sampler.pipe.unet, emotion, token, embeddings, out_dir, fmt, base_model=base_model,
                          base_revision=revision, sampler=record)
