"""A baseline run's settings: method, prompt, and the same model / data / optim / run sections as CoEmoGen's recipe.

Defaults follow diffusers' textual_inversion and dreambooth examples where the paper is silent. It does not train.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

from emotrain.recipe import DataConfig, ModelConfig, OptimConfig, PaperConfig, RunConfig

DEFAULT_LR = {"textual-inversion": 5e-4, "dreambooth": 5e-6}
"""Learning rates of diffusers' examples (TI README: 5e-4; DreamBooth README: 5e-6), used when the recipe sets none."""


@dataclass
class BaselineRecipe:
    method: Literal["textual-inversion", "dreambooth"] = "textual-inversion"
    """textual-inversion: one learned input embedding per emotion, everything else frozen.
    dreambooth: one UNet fine-tuned in full on every emotion, each emotion's name as its identifier."""
    prompt: str = "an image of {emotion}"
    """Training and generation prompt (the paper prompts its baselines "an image of {emotion}"); `{emotion}` becomes
    the emotion's learned token `<amusement>` (textual inversion) or its name (DreamBooth)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    paper: PaperConfig = field(default_factory=PaperConfig)

    def __post_init__(self) -> None:
        if self.prompt.count("{emotion}") != 1:
            raise ValueError(f"prompt must contain '{{emotion}}' exactly once; got {self.prompt!r}")

    def token(self, emotion: str) -> str:
        """What stands for `emotion` in the prompt."""
        return f"<{emotion}>" if self.method == "textual-inversion" else emotion


def load_baseline_recipe(path: str | Path | None, method: str | None = None, overrides: Sequence[str] = ()) -> BaselineRecipe:
    """Read a baseline recipe (YAML, `base:` allowed) with `key=value` overrides. `method` (from the command line) must
    agree with the recipe's; optim.lr defaults to the method's diffusers default when nobody sets it."""
    from emocurate.core.config import ConfigError, from_dict, read_yaml, set_dotted

    data = read_yaml(path) if path is not None else {}
    if method is not None:
        if data.get("method", method) != method:
            raise ConfigError(f"--method {method} but the recipe {path} says method: {data['method']}")
        data["method"] = method
    for item in overrides:
        set_dotted(data, item)
    chosen = data.get("method", "textual-inversion")
    if chosen in DEFAULT_LR:
        data.setdefault("optim", {}).setdefault("lr", DEFAULT_LR[chosen])
    return from_dict(BaselineRecipe, data)
