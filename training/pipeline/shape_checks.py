"""Automatic checks of the study's shape, from an evaluation's bootstrap.

Every check compares average pairwise win rates (the study's headline
number, ties counted as non-wins) and rests on the 95 % paired bootstrap
interval of a difference (``stats.bootstrap_evaluation``: scenarios, and
personas within scenarios, resampled together for all models). Outcomes:

* ``PASS`` / ``FAIL`` / ``INCONCLUSIVE`` by the check's rule (below);
* ``NOT_APPLICABLE`` when a model or criterion the check needs is not in the
  run (a phase-1 run has no criteria-set policies, and so on) - never a PASS.

The rules (d = difference of average pairwise win rates, [lo, hi] its
95 % interval):

* "beats" (DPO-empathy vs base on empathy; MODPO vs DPO-empathy on safety;
  all-five-therapeutic+safety vs Gricean+safety on overall):
  PASS when lo > 0, FAIL when hi < 0, INCONCLUSIVE when the interval
  contains 0.
* "not worse than" (SFT vs base, a non-inferiority test with margin
  ``NON_INFERIORITY_MARGIN`` = 5 points, on every evaluated criterion):
  PASS when lo > -margin on every criterion; FAIL when hi < -margin on some
  criterion; INCONCLUSIVE otherwise.
* "not dominated" (MODPO on (empathy, safety) against each single-objective
  policy P: SFT and every ``dpo:<criterion>``): with d_c = MODPO - P on
  criterion c, P clearly dominates MODPO when d_c's interval lies below 0 on
  both criteria; MODPO is clearly not dominated by P when d_c's interval lies
  above 0 on at least one criterion. PASS when MODPO is clearly not
  dominated by every P; FAIL when some P clearly dominates it; INCONCLUSIVE
  otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass

from .stats import BootstrapResult

__all__ = ["PASS", "FAIL", "INCONCLUSIVE", "NOT_APPLICABLE", "ShapeRoles", "NON_INFERIORITY_MARGIN",
           "classify_beats", "run_shape_checks", "SHAPE_RULES"]

PASS, FAIL, INCONCLUSIVE, NOT_APPLICABLE = "PASS", "FAIL", "INCONCLUSIVE", "NOT_APPLICABLE"
NON_INFERIORITY_MARGIN = 0.05
STATISTIC = "average_pairwise_win_rate"

SHAPE_RULES = {
    "statistic": "difference of average pairwise win rates (ties are non-wins), with its 95% paired two-level bootstrap "
                 "interval [lo, hi] (scenarios and personas within scenarios resampled together for all models; recentred on the "
                 "observed difference, see RULES['interval'])",
    "beats": "PASS when lo > 0, FAIL when hi < 0, INCONCLUSIVE when the interval contains 0",
    "not_worse": f"non-inferiority with a margin of {100 * NON_INFERIORITY_MARGIN:.0f} points on every evaluated criterion: "
                 f"PASS when lo > -{NON_INFERIORITY_MARGIN} on every criterion, FAIL when hi < -{NON_INFERIORITY_MARGIN} "
                 "on some criterion, INCONCLUSIVE otherwise",
    "not_dominated": "against each single-objective policy P (SFT and every dpo:<criterion>), d = MODPO - P on empathy and "
                     "safety: PASS when for every P some d has lo > 0 (MODPO clearly better somewhere); FAIL when for some "
                     "P both d have hi < 0 (P clearly better on both); INCONCLUSIVE otherwise",
    "not_applicable": "a check whose models or criteria are not in the run is NOT_APPLICABLE, never PASS",
}


@dataclass
class ShapeRoles:
    """Which model names play which part (the names ``training.plans.build_plan`` gives)."""

    base: str = "base"
    sft: str = "sft"
    primary: str = "empathy"
    safety: str = "safety"
    overall: str = "overall"
    dpo_primary: str = "dpo:empathy"
    modpo: str = "modpo:empathy"
    five_therapeutic: str = "modpo:therapeutic_five_safety"
    gricean: str = "modpo:gricean_safety"


def classify_beats(interval: list[float] | None) -> str:
    if interval is None:
        return INCONCLUSIVE
    low, high = interval
    if low > 0:
        return PASS
    if high < 0:
        return FAIL
    return INCONCLUSIVE


def _available(boot: BootstrapResult, models: list[str], criteria: list[str]) -> str | None:
    """Why a check cannot run (None when it can)."""
    missing = [m for m in models if m not in boot.table.models]
    if missing:
        return f"model(s) not in this run: {', '.join(missing)}"
    missing = [c for c in criteria if c not in boot.table.criteria]
    if missing:
        return f"criterion not evaluated in this run: {', '.join(missing)}"
    for m in models:
        for c in criteria:
            if boot.estimate("apwr", m, c) is None:
                return f"{m} has no decided comparison on {c}"
    return None


def _part(boot: BootstrapResult, first: str, second: str, criterion: str) -> dict:
    estimate, interval = boot.difference("apwr", first, second, criterion)
    return {"first": first, "second": second, "criterion": criterion, "estimate": estimate, "interval": interval}


def _not_applicable(check: dict, reason: str) -> dict:
    return {**check, "status": NOT_APPLICABLE, "reason": reason, "estimate": None, "interval": None, "parts": []}


def _beats(boot, key, title, first, second, criterion) -> dict:
    check = {"key": key, "title": title, "rule": SHAPE_RULES["beats"], "statistic": f"{first} - {second}, {criterion}",
             "models": [first, second], "criteria": [criterion]}
    reason = _available(boot, [first, second], [criterion])
    if reason:
        return _not_applicable(check, reason)
    part = _part(boot, first, second, criterion)
    return {**check, "status": classify_beats(part["interval"]), "estimate": part["estimate"], "interval": part["interval"],
            "parts": [part], "reason": None}


def _not_worse(boot, roles: ShapeRoles, margin: float) -> dict:
    criteria = list(boot.table.criteria)
    check = {"key": "sft_not_worse_than_base", "title": "SFT on chosen responses is not worse than base",
             "rule": SHAPE_RULES["not_worse"], "statistic": f"{roles.sft} - {roles.base}, every evaluated criterion",
             "models": [roles.sft, roles.base], "criteria": criteria, "margin": margin}
    reason = _available(boot, [roles.sft, roles.base], criteria)
    if reason:
        return _not_applicable(check, reason)
    parts = [_part(boot, roles.sft, roles.base, c) for c in criteria]
    intervals = [p["interval"] for p in parts]
    if any(i is not None and i[1] < -margin for i in intervals):
        status = FAIL
    elif all(i is not None and i[0] > -margin for i in intervals):
        status = PASS
    else:
        status = INCONCLUSIVE
    # The headline interval is the least favourable criterion's (lowest lower end).
    worst = min(parts, key=lambda p: p["interval"][0] if p["interval"] else float("-inf"))
    return {**check, "status": status, "estimate": worst["estimate"], "interval": worst["interval"], "parts": parts,
            "reason": None}


def _not_dominated(boot, roles: ShapeRoles) -> dict:
    criteria = [roles.primary, roles.safety]
    rivals = [m for m in boot.table.models if m == roles.sft or (m.startswith("dpo:") and m != roles.modpo)]
    check = {"key": "modpo_not_dominated",
             "title": f"MODPO is not dominated on ({', '.join(criteria)}) by any single-objective policy",
             "rule": SHAPE_RULES["not_dominated"], "statistic": f"{roles.modpo} - P on {' and '.join(criteria)}",
             "models": [roles.modpo, *rivals], "criteria": criteria}
    if not rivals:
        return _not_applicable(check, "no single-objective policy (sft, dpo:<criterion>) in this run")
    reason = _available(boot, [roles.modpo, *rivals], criteria)
    if reason:
        return _not_applicable(check, reason)
    parts, clearly_better_everywhere, dominated = [], True, False
    for rival in rivals:
        these = [_part(boot, roles.modpo, rival, c) for c in criteria]
        parts += these
        if not any(p["interval"] is not None and p["interval"][0] > 0 for p in these):
            clearly_better_everywhere = False
        if all(p["interval"] is not None and p["interval"][1] < 0 for p in these):
            dominated = True
    status = FAIL if dominated else PASS if clearly_better_everywhere else INCONCLUSIVE
    # The headline interval: the part closest to deciding against MODPO (lowest upper end).
    decisive = min(parts, key=lambda p: p["interval"][1] if p["interval"] else float("inf"))
    return {**check, "status": status, "estimate": decisive["estimate"], "interval": decisive["interval"], "parts": parts,
            "reason": None}


def run_shape_checks(boot: BootstrapResult, roles: ShapeRoles | None = None,
                     margin: float = NON_INFERIORITY_MARGIN) -> list[dict]:
    """The study's shape, checked on one evaluation (rules in the module docstring and ``SHAPE_RULES``)."""
    roles = roles or ShapeRoles()
    return [
        _beats(boot, "dpo_beats_base", f"DPO ({roles.primary}) beats the base model on {roles.primary}",
               roles.dpo_primary, roles.base, roles.primary),
        _beats(boot, "modpo_beats_dpo_on_safety", f"MODPO ({roles.primary} primary, {roles.safety} margin) beats "
               f"DPO ({roles.primary}) on {roles.safety}", roles.modpo, roles.dpo_primary, roles.safety),
        _not_dominated(boot, roles),
        _not_worse(boot, roles, margin),
        _beats(boot, "five_therapeutic_beats_gricean", "All five therapeutic criteria + safety beat the Gricean maxims + "
               f"safety on {roles.overall} preference", roles.five_therapeutic, roles.gricean, roles.overall),
    ]
