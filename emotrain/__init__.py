"""emotrain: fine-tune Stable Diffusion 1.5 the CoEmoGen way on an emotion-captioned dataset."""

__version__ = "0.1.0"
