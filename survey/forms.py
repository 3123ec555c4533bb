"""Turning participant POSTs into plain values for the services, and saved
or submitted values into what the templates render. Validation lives in the
services, so every caller gets the same checks."""
from __future__ import annotations

from html import escape

from django import forms as django_forms
from django.utils.safestring import mark_safe

from . import questions


def field_id(key: str) -> str:
    return "field-" + key.replace(".", "-").replace("_", "-")


def prefixed(post, prefix: str) -> dict[str, str]:
    """{suffix: value} for every POST field starting with ``prefix``."""
    return {name[len(prefix):]: post.get(name, "") for name in post if name.startswith(prefix)}


def choices_from_post(post, items) -> dict:
    data = {}
    for item in items:
        value = post.getlist(item.key) if item.multiple else post.get(item.key, "")
        data[item.key] = {"value": value, "text": post.get(f"{item.key}-text", "")}
    return data


def with_attention(items, check):
    position = questions.ATTENTION_POSITION[check.key]
    return (*items[:position], check, *items[position:])


def option_input(*, kind: str, name: str, option_id: str, value, checked: bool, required: bool, exclusive: bool = False):
    """One radio or checkbox ``<input>``, escaped, made here rather than in the template: the
    questionnaire pages show about fifty of them, and attribute by attribute in the template
    they were most of a page's rendering time (html.escape: format_html cost as much again)."""
    return mark_safe(f'<input type="{kind}" name="{escape(name)}" id="{escape(option_id)}" value="{escape(str(value))}"'
                     f'{" checked" if checked else ""}{" required" if required else ""}{" data-exclusive" if exclusive else ""}>')


def _options(item, selected, prefix_id):
    chosen = set(selected) if isinstance(selected, list) else {selected}
    kind = "checkbox" if item.multiple else "radio"
    return [
        {"value": value, "label": label, "id": f"{prefix_id}-{n}",
         "input": option_input(kind=kind, name=item.key, option_id=f"{prefix_id}-{n}", value=value, checked=value in chosen,
                               required=not item.multiple, exclusive=item.multiple and value == "prefer_not_to_say")}
        for n, (value, label) in enumerate(item.choices)
    ]


def choice_fields(items, data: dict, errors: dict) -> list[dict]:
    fields = []
    for item in items:
        entry = data.get(item.key) or {}
        value = entry.get("value", [] if item.multiple else "")
        fid = field_id(item.key)
        fields.append({
            "key": item.key, "id": fid, "label": item.label, "hint": item.hint, "multiple": item.multiple,
            "options": _options(item, value, fid), "error": errors.get(item.key, "") or errors.get(f"{item.key}-text", ""),
            "text_choice": item.text_choice, "text_label": item.text_label, "text": entry.get("text", ""),
            "is_check": item.correct is not None,
        })
    return fields


def importance_context(criteria, ratings: dict, attention, check, errors: dict) -> dict:
    rows = []
    for criterion in criteria:
        fid = field_id(f"importance-{criterion.key}")
        selected = str(ratings.get(criterion.key, ""))
        rows.append({
            "criterion": criterion, "name": f"importance-{criterion.key}", "id": fid,
            "options": [{"value": v, "label": label, "id": f"{fid}-{v}",
                         "input": option_input(kind="radio", name=f"importance-{criterion.key}", option_id=f"{fid}-{v}", value=v,
                                               checked=v == selected, required=True)}
                        for v, label in questions.IMPORTANCE_5],
            "error": errors.get(f"importance-{criterion.key}", ""),
        })
    position = questions.ATTENTION_POSITION[check.key]
    check_field = choice_fields([check], {check.key: {"value": attention or ""}}, errors)[0]
    return {"rows_before": rows[:position], "rows_after": rows[position:], "check": check_field}


def _ranking_items(entries, ranks: dict) -> list[dict]:
    """entries: [(key, title, detail)] in the shown order; ranks: saved or submitted {key: "n"}.
    Items come back in rank order when every rank is valid, else in the shown order."""
    n = len(entries)
    items = []
    for position, (key, title, detail) in enumerate(entries, start=1):
        try:
            rank = int(ranks.get(key, position))
        except (TypeError, ValueError):
            rank = position
        items.append({"key": key, "title": title, "detail": detail, "rank": rank, "id": field_id(f"rank-{key}")})
    if sorted(i["rank"] for i in items) == list(range(1, n + 1)):
        items.sort(key=lambda i: i["rank"])
    for item in items:
        # The rank select's options, made here for the same reason as option_input's.
        item["rank_options"] = mark_safe("".join(f'<option value="{k}"{" selected" if k == item["rank"] else ""}>{k}</option>'
                                                 for k in range(1, n + 1)))
    return items


def eligibility_fields(questions_, answers: dict, errors: dict) -> list[dict]:
    """The eligibility questions as choice fields (the page shows them as the other pages' questions),
    with the submitted answers ticked."""
    fields = []
    for question in questions_:
        name = f"eligibility-{question.key}"
        fields.append({
            "key": name, "id": f"field-{name}", "label": question.text, "hint": "", "multiple": False,
            "error": errors.get(name, ""), "text_choice": False, "is_check": False,
            "options": [{"id": f"{name}-{value}", "label": label,
                         "input": option_input(kind="radio", name=name, option_id=f"{name}-{value}", value=value,
                                               checked=answers.get(question.key) == value, required=True)}
                        for value, label in question.Answer.choices],
        })
    return fields


def criteria_ranking_items(criteria, ranks: dict) -> list[dict]:
    return _ranking_items([(c.key, c.name, c.question) for c in criteria], ranks)


def response_ranking_items(responses, ranks: dict) -> list[dict]:
    return _ranking_items([(str(r.pk), f"Response {chr(65 + i)}", r.text) for i, r in enumerate(responses)], ranks)


# --- Researcher forms -------------------------------------------------------------------------

PERSONA_SIZE_MAX = 100_000
SEED_MAX = 2**32 - 1  # numpy's seed range; fits the BigIntegerField it is stored in
WHOLE_NUMBER = "Sizes and seed must be whole numbers."


class PersonaSelectionForm(django_forms.Form):
    """Sizes, seed and minimum quality for persona selection, range-checked
    (the study's sizes when a size is left empty)."""

    total = django_forms.IntegerField(required=False, min_value=1, max_value=PERSONA_SIZE_MAX, label="Total",
                                      error_messages={"invalid": WHOLE_NUMBER})
    train = django_forms.IntegerField(required=False, min_value=0, max_value=PERSONA_SIZE_MAX, label="Train",
                                      error_messages={"invalid": WHOLE_NUMBER})
    test = django_forms.IntegerField(required=False, min_value=0, max_value=PERSONA_SIZE_MAX, label="Test",
                                     error_messages={"invalid": WHOLE_NUMBER})
    seed = django_forms.IntegerField(required=False, min_value=0, max_value=SEED_MAX, label="Seed",
                                     error_messages={"invalid": WHOLE_NUMBER})
    min_quality = django_forms.FloatField(required=False, min_value=0, max_value=1, label="Minimum quality",
                                          error_messages={"invalid": "Enter a number between 0 and 1."})

    def __init__(self, *args, study, **kwargs):
        super().__init__(*args, **kwargs)
        self.study = study

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        defaults = {"total": self.study.persona_total, "train": self.study.persona_train, "test": self.study.persona_test,
                    "seed": 0, "min_quality": 0.5}
        for name, default in defaults.items():
            if cleaned.get(name) is None:
                cleaned[name] = default
        if cleaned["train"] + cleaned["test"] != cleaned["total"]:
            raise django_forms.ValidationError(
                f"Train ({cleaned['train']}) plus test ({cleaned['test']}) must equal the total ({cleaned['total']}).")
        return cleaned

    def error_messages(self) -> list[str]:
        """Every problem as one sentence naming its field, for the dashboard's messages."""
        out = []
        for name, errors in self.errors.items():
            label = self.fields[name].label if name in self.fields else ""
            out += [f"{label}: {error}" if label else error for error in errors]
        return out
