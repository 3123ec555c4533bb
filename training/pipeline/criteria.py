"""The criteria, for the ML library: the wording lives in ``core.criteria``, a
plain-Python module with no Django import (see its docstring for why there)."""
from core.criteria import (
    ALL_CRITERIA,
    ALL_CRITERIA_SETS,
    CRITERIA_SETS,
    GRICEAN,
    OVERALL,
    THERAPEUTIC,
    CriteriaSetSpec,
    CriterionSpec,
    get_criterion,
)

__all__ = ["ALL_CRITERIA", "ALL_CRITERIA_SETS", "CRITERIA_SETS", "GRICEAN", "OVERALL", "THERAPEUTIC", "CriteriaSetSpec",
           "CriterionSpec", "get_criterion"]
