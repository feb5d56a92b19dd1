"""The run folder's README.md model card, rendered from a Jinja template: what was trained, on what, how to use it.

It only writes text; the sample grids it links are made by train.py.
"""

from __future__ import annotations

from pathlib import Path

TEMPLATE = """---
base_model: {{ config.base_model.id }}
library_name: diffusers
{% if hub_dataset %}datasets:
- {{ hub_dataset }}
{% endif %}license: creativeml-openrail-m
tags:
- stable-diffusion
- text-to-image
- lora
- emotion
- coemogen
---

# CoEmoGen emotion model ({{ config.emotions | length }} emotions)

Stable Diffusion 1.5 fine-tuned the CoEmoGen way (emotion Mapper + Visual-perception Encoder + HiLoRA, trained with
L_LDM{% if config.recipe.loss.semantic %} + {{ config.recipe.loss.semantic_weight }} x L_SEM ({{ config.recipe.loss.semantic_type }}){% endif %})
with emotrain (coemogen-toolkit). It generates images that evoke a chosen emotion.

- Base model: `{{ config.base_model.id }}`{% if config.base_model.resolved_revision %} @ `{{ config.base_model.resolved_revision }}`{% endif %}
- CLIP (image encoder, text projection): `{{ config.clip.id }}`{% if config.clip.resolved_revision %} @ `{{ config.clip.resolved_revision }}`{% endif %}
- Training data: `{{ config.dataset }}`
- Steps: {{ config.steps }} (batch {{ config.recipe.optim.batch_size }} x accumulation {{ config.recipe.optim.gradient_accumulation }}), AdamW lr {{ config.recipe.optim.lr }}, weight decay {{ config.recipe.optim.weight_decay }}
- HiLoRA rank {{ config.recipe.hilora.rank }} on {{ config.recipe.hilora.target_modules | join(", ") }}; emotion LoRAs: {{ config.recipe.hilora.emotion_loras }}, polarity LoRAs: {{ config.recipe.hilora.polarity_loras }}
- Emotion input: {{ config.recipe.emotion_input }}

## Emotions

| emotion | polarity | training images | after oversampling |
|---|---|---|---|
{% for e in config.emotions %}| {{ e }} | {{ config.polarity[e] }} | {{ config.oversampling.before[e] }} | {{ config.oversampling.after[e] }} |
{% endfor %}
## Samples

{{ config.recipe.run.samples_per_emotion }} images per emotion. Sampler: {{ sampler }}; the HiLoRA adapters act on both
classifier-free-guidance halves; v_i drawn from the emotion cluster. `emotrain generate` on this run uses the same
sampler by default (`--scheduler` changes it).
{% if samples %}
{% for e, path in samples.items() %}
### {{ e }}

![{{ e }}]({{ path }})
{% endfor %}{% else %}
No samples were rendered for this run.
{% endif %}
## Use

```bash
emotrain generate --model . --emotion {{ config.emotions[0] }} -n 8 --seed 0 --out out/
emotrain generate --model . --emotion {{ config.emotions[0] }} --prompt "a city street" -n 4 --out out/   # emotion transfer
emotrain export --model . --emotion {{ config.emotions[0] }} --format diffusers --out lora/   # a stock diffusers LoRA + embedding
```

## Limitations

Emotions are subjective and culture-dependent; the model reflects the images and captions of its training data and
inherits Stable Diffusion 1.5's biases and licence terms. Check the training data's licence before sharing outputs.

Files: `hilora.safetensors` (emotion and polarity LoRAs), `mapper/` and `encoder/` (diffusers `from_pretrained`),
`emotion_clusters.safetensors` (per emotion a low-rank Gaussian over whole CLIP image-token sets: mean, principal
directions, residual std; format in `emotrain/model/clusters.py`), `config.json` (every hyperparameter).
"""


def write_card(out: Path, config: dict, samples: dict[str, str]) -> Path:
    """Render README.md into the run folder; `samples` maps emotion -> grid PNG path relative to the folder."""
    import jinja2

    source = str(config["dataset"])
    hub_dataset = source if source.count("/") == 1 and not Path(source).exists() and not source.startswith(".") else None
    from emotrain.sampling import DEFAULT_SCHEDULER, describe

    run = config["recipe"]["run"]
    sampler = describe(run.get("scheduler", DEFAULT_SCHEDULER), run["inference_steps"], run["guidance"])
    text = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(TEMPLATE).render(
        config=config, samples=samples, hub_dataset=hub_dataset, sampler=sampler)
    path = Path(out) / "README.md"
    path.write_text(text)
    return path
