"""The paper's fine-tuned baselines (Table 1), trained on the same dataset as CoEmoGen: Textual Inversion and DreamBooth.

`recipe` describes a baseline run, `train` fits one, `sampler` loads one for `emotrain generate` / `emotrain eval`.
"""

METHODS = ("textual-inversion", "dreambooth")
