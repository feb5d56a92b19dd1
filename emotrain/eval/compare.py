"""Which differences between evaluated models are significant: every pair of rows, every metric, said in words.

Reads the bootstrap replicates that the metric runners stored in results.json (see `emotrain.eval.intervals`);
computes no metric itself.
"""

from __future__ import annotations

from itertools import combinations

from emotrain.eval.intervals import difference

LOWER_IS_BETTER = {"fid"}


def pairwise(models: dict, key: str, level: float = 0.95) -> list[dict]:
    """For each pair of models with replicates of `key`: values, the interval of A - B and which one is better."""
    names = [n for n, m in models.items() if key in m.get("bootstrap", {})]
    out = []
    for a, b in combinations(names, 2):
        diff = difference(models[a]["bootstrap"][key], models[b]["bootstrap"][key], level)
        va, vb = models[a]["overall"][key], models[b]["overall"][key]
        better = None
        if diff["significant"]:
            a_higher = diff["low"] > 0
            better = b if a_higher == (key in LOWER_IS_BETTER) else a
        out.append({"a": a, "b": b, "value_a": va, "value_b": vb, "difference": va - vb, **diff, "better": better})
    return out


def render_differences(models: dict, columns: list, level: float = 0.95) -> list[str]:
    """Markdown: per metric, one sentence per pair of models, then a count of the significant pairs."""
    lines = []
    for key, title, fmt in columns:
        pairs = pairwise(models, key, level)
        if not pairs:
            continue
        name = title.rstrip("↑↓")
        lines += [f"**{name}** ({sum(p['significant'] for p in pairs)} of {len(pairs)} pairs differ significantly):", ""]
        for p in pairs:
            first, second = (p["b"], p["a"]) if p["better"] == p["b"] else (p["a"], p["b"])  # the sentence's order
            sign = 1 if first == p["a"] else -1
            value = {p["a"]: p["value_a"], p["b"]: p["value_b"]}
            values = f"{fmt.format(value[first])} vs {fmt.format(value[second])}"
            low, high = sorted((sign * p["low"], sign * p["high"]))
            ci = f"difference {sign * p['difference']:+.4g}, {level:.0%} CI [{low:+.4g}, {high:+.4g}]"
            if p["significant"]:
                lines.append(f"- {first} is significantly better than {second} ({values}; {ci}).")
            else:
                lines.append(f"- {p['a']} and {p['b']} do not differ significantly ({values}; {ci}): the gap is "
                             "inside the sampling noise.")
        lines.append("")
    return lines
