"""Exports (annotation.services.exports): audited, with the order shown."""
import json

import pytest

from annotation import services
from annotation.models import Assignment
from core.models import AuditEvent
from tests.annotation.factories import make_study
from tests.factories import ResearcherFactory

pytestmark = pytest.mark.django_db


def test_exports_are_audited_and_carry_the_order_shown():
    study = make_study(n_items=3, n_clinicians=3, overlap=3, keys=("empathy",))
    researcher = ResearcherFactory()
    for membership in study.memberships.all():
        for assignment in Assignment.objects.filter(study=study, clinician=membership.clinician):
            services.judgment_submit(assignment=assignment, clinician=membership.clinician,
                                     choices={"empathy": assignment.side_of("a"), "overall": assignment.side_of("b")})
    csv_text = services.judgments_export(study=study, actor=researcher)
    header, *rows = csv_text.strip().splitlines()
    assert "shown_left" in header and "choice_shown" in header and "choice_source" in header and "normalisation" in header
    assert len(rows) == 3 * 3 * 2
    import csv as csv_module
    import io

    for row in csv_module.DictReader(io.StringIO(csv_text)):
        expected = "source_a" if row["criterion"] == "empathy" else "source_b"
        assert row["choice_source"] == expected
        shown_as = "A" if row["shown_left"] == expected else "B"
        assert row["choice_shown"] == shown_as
    pairs = [json.loads(line) for line in services.preference_pairs_export(study=study, actor=researcher).splitlines()]
    assert len(pairs) == 6
    assert set(pairs[0]) == {"prompt", "scenario_id", "criterion", "chosen", "rejected", "normalisation"}
    assert pairs[0]["normalisation"] == "display-v1"
    # A coin decided which factory source is A; the pairs follow the sources, not the labels.
    a_prefix = "Warm" if study.items.first().response_a.text.startswith("Warm") else "Brief"
    b_prefix = "Brief" if a_prefix == "Warm" else "Warm"
    for pair in pairs:
        assert pair["chosen"].startswith(a_prefix if pair["criterion"] == "empathy" else b_prefix)
    actions = set(AuditEvent.objects.filter(actor=researcher).values_list("action", flat=True))
    assert actions == {"annotation.export.judgments", "annotation.export.pairs"}
