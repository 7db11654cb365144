"""The picture of a ``toolkit tune`` search: the objective per trial and one scatter per parameter."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .tune_space import Space


def plot_trials(rows: list[dict[str, Any]], space: Space, path: str | Path) -> Path:
    """Write a PNG of the trials (rows as in trials.json) to ``path`` and return it.

    Top: the objective per trial (completed as dots, pruned as crosses at their last reported
    score, the baseline ringed, the best so far as a step line). Below: the objective against each
    searched parameter (log axis for log-scaled ones), with the baseline's value marked.

    Example:
        >>> plot_trials(json.load(open("runs/x-tune/trials.json"))["rows"], space, "trials.png")  # doctest: +SKIP
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError('the trials plot needs matplotlib: pip install -e ".[tune]"') from err
    scored = [r for r in rows if r["value"] is not None]
    params = list(space.params)
    cols = min(4, max(1, len(params)))
    lines = math.ceil(len(params) / cols)
    fig = plt.figure(figsize=(3.2 * cols + 1, 3.2 + 2.6 * lines))
    grid = fig.add_gridspec(1 + lines, cols, height_ratios=[1.3] + [1] * lines)
    ax = fig.add_subplot(grid[0, :])
    for state, marker, color in (("complete", "o", "tab:blue"), ("pruned", "x", "tab:gray")):
        pts = [r for r in scored if r["state"] == state]
        ax.scatter([r["number"] for r in pts], [r["value"] for r in pts], marker=marker, color=color, label=f"{state} ({len(pts)})", zorder=3)
    base = [r for r in scored if r["baseline"]]
    if base:
        ax.scatter([r["number"] for r in base], [r["value"] for r in base], s=160, facecolors="none", edgecolors="tab:red", label="baseline (recipe's values)", zorder=4)
    best, xs, ys = -math.inf, [], []
    for r in sorted((r for r in scored if r["state"] == "complete"), key=lambda r: r["number"]):
        best = max(best, r["value"])
        xs.append(r["number"])
        ys.append(best)
    if xs:
        ax.step(xs + [max(r["number"] for r in rows)], ys + [ys[-1]], where="post", color="tab:green", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(space.metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    for i, name in enumerate(params):
        sub = fig.add_subplot(grid[1 + i // cols, i % cols])
        for state, marker, color in (("complete", "o", "tab:blue"), ("pruned", "x", "tab:gray")):
            pts = [r for r in scored if r["state"] == state and r["values"].get(name) is not None]
            sub.scatter([_number(r["values"][name]) for r in pts], [r["value"] for r in pts], marker=marker, color=color, s=18)
        for r in base:
            if r["values"].get(name) is not None:
                sub.scatter([_number(r["values"][name])], [r["value"]], s=90, facecolors="none", edgecolors="tab:red")
        if space.params[name].log and any(r["values"].get(name) is not None for r in scored):
            sub.set_xscale("log")
        sub.set_title(name, fontsize=9)
        sub.tick_params(labelsize=7)
        sub.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _number(value: Any) -> Any:
    """Categorical choices are plotted as they are (numbers on a numeric axis, strings as categories)."""
    return float(value) if isinstance(value, bool) else value


__all__ = ["plot_trials"]
