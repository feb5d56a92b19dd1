"""The caption stage: a contract (contract.py: config, prompts, cleaning, result type) and one module per backend.

`load_captioner(cfg)` picks the backend by name; the backends import the contract, never this package's loader.
"""

from __future__ import annotations


def load_captioner(cfg):
    """The captioner named by `cfg.backend` (transformers, vllm or openai), built from `cfg`."""
    if cfg.backend == "transformers":
        from emocurate.stages.caption.transformers import TransformersCaptioner

        return TransformersCaptioner(cfg)
    if cfg.backend == "vllm":
        from emocurate.stages.caption.vllm import VLLMCaptioner

        return VLLMCaptioner(cfg)
    from emocurate.stages.caption.openai import OpenAICaptioner

    return OpenAICaptioner(cfg)
