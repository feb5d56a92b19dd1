"""The paper's evaluation metrics (FID, LPIPS, Emo-A, Sem-C, Sem-D) plus CLIP score, one module per metric.

Each metric is a plain function over image lists and already-loaded backbones; loading weights, choosing images and
writing reports live in `emotrain.eval.evaluate`.
"""
