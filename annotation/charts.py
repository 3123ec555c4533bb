"""The results chart: source A's win / tie / loss percentages per dimension as
horizontal stacked bars, drawn with matplotlib's Agg backend into an SVG string
(researchers only: it names the sources)."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

COLOURS = {"win": "#1f5f8b", "tie": "#b8b8c4", "loss": "#c0603a"}


def win_loss_tie_svg(results: dict, *, basis: str = "by_judgment") -> str:
    """SVG markup (no XML prolog, so it can be inlined in HTML)."""
    dimensions = results["dimensions"]
    source_a = results["study"]["source_a"]["name"]
    source_b = results["study"]["source_b"]["name"]
    height = 1.2 + 0.45 * max(len(dimensions), 1)
    figure = Figure(figsize=(7.5, height))
    axes = figure.subplots()
    labels = [d["name"] for d in dimensions][::-1]
    rows = [d[basis] for d in dimensions][::-1]
    wins = [r["win_pct"] or 0 for r in rows]
    ties = [r["tie_pct"] or 0 for r in rows]
    losses = [r["loss_pct"] or 0 for r in rows]
    y = range(len(labels))
    axes.barh(y, wins, color=COLOURS["win"], label=f"{source_a} better")
    axes.barh(y, ties, left=wins, color=COLOURS["tie"], label="tie")
    axes.barh(y, losses, left=[w + t for w, t in zip(wins, ties)], color=COLOURS["loss"], label=f"{source_b} better")
    for row_index, row in enumerate(rows):
        if row["n"]:
            axes.text(101, row_index, f"n={row['n']}", va="center", fontsize=8)
    axes.set_yticks(list(y), labels)
    axes.set_xlim(0, 112)
    axes.set_xlabel("% of clinician judgments")
    axes.axvline(50, color="#1b1b1f", linewidth=0.6, linestyle=":")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25 if len(labels) > 2 else -0.45), ncol=3, fontsize=8, frameon=False)
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "attune"}):
        figure.savefig(buffer, format="svg", bbox_inches="tight")
    svg = buffer.getvalue()
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg
