"""Dashboard plots as SVG (matplotlib's object API, no pyplot: no global
backend state in a web process)."""
from __future__ import annotations

import io

from matplotlib.figure import Figure

BAR = "#1f5f8b"
BAR_2 = "#a3242b"


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    return buffer.getvalue()


def _empty(message: str) -> str:
    fig = Figure(figsize=(6, 1.2))
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center")
    return _svg(fig)


def _interval_bars(report: dict, key: str, empty: str, xlabel: str, xlim: tuple[float, float] | None = None) -> str:
    """One bar per criterion with a report value (``key``) and its interval (``key``_low, ``key``_high)."""
    rows = [r for r in report["rows"] if r[key] is not None]
    if not rows:
        return _empty(empty)
    values = [r[key] for r in rows]
    errors = [[v - r[f"{key}_low"] for v, r in zip(values, rows)], [r[f"{key}_high"] - v for v, r in zip(values, rows)]]
    fig = Figure(figsize=(6, 0.45 * len(rows) + 1))
    ax = fig.add_subplot()
    ax.barh([r["name"] for r in rows], values, xerr=errors, color=BAR, capsize=3)
    ax.invert_yaxis()
    if xlim is not None:
        ax.set_xlim(*xlim)
    ax.set_xlabel(xlabel)
    return _svg(fig)


def importance_svg(report: dict) -> str:
    return _interval_bars(report, "mean", "No completed participants yet.",
                          f"Mean importance (1–5) with bootstrap 95% CI, n = {report['n']}", xlim=(1, 5))


def top_share_svg(report: dict) -> str:
    rows = report["rows"]
    if not report["n"]:
        return _empty("No completed participants yet.")
    fig = Figure(figsize=(6, 0.55 * len(rows) + 1))
    ax = fig.add_subplot()
    names = [r["name"] for r in rows]
    positions = range(len(rows))
    ax.barh([p - 0.2 for p in positions], [100 * r["top_share"] for r in rows], height=0.4, color=BAR, label="Among highest rated")
    ax.barh([p + 0.2 for p in positions], [100 * r["first_share"] for r in rows], height=0.4, color=BAR_2, label="Ranked first")
    ax.set_yticks(list(positions), names)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of participants")
    ax.legend(loc="lower right", fontsize="small")
    return _svg(fig)


def plackett_luce_svg(report: dict) -> str:
    return _interval_bars(report, "pl", "No complete criteria rankings yet.",
                          f"Plackett–Luce weight (sums to 1) with bootstrap 95% CI, n = {report['n_rankings']}")


def agreement_svg(report: dict) -> str:
    taus = report["agreement"]["taus"]
    if not taus:
        return _empty("No participant with both ratings and a ranking yet.")
    fig = Figure(figsize=(6, 2.6))
    ax = fig.add_subplot()
    ax.hist(taus, bins=[x / 10 for x in range(-10, 11)], color=BAR)
    ax.set_xlim(-1, 1)
    ax.set_xlabel("Kendall's tau between a participant's ratings and ranking")
    ax.set_ylabel("participants")
    return _svg(fig)


PLOTS = {
    "importance": importance_svg,
    "top-share": top_share_svg,
    "plackett-luce": plackett_luce_svg,
    "agreement": agreement_svg,
}
