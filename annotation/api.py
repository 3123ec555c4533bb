"""JSON API of the annotation app (DRF, session authentication).

Clinician endpoints speak in screen terms ("left" is the page's Response A)
and opaque tokens; they never carry a model name, id, checkpoint, generation
setting or anything that orders the sources. Researcher endpoints (staff in
the Researchers group) return results and import judge decisions.

Views that read a body take JSON only (``JsonOnlyMixin``: anything else is a 415, the one content
type the schema lists); views without one ignore what is sent. Each operation's schema lists the
error statuses it answers with (``core.api_schema.error_responses``).
"""
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core import roles
from core.api_schema import JsonOnlyMixin, StrictBooleanField, error_responses
from core.errors import NotFound

from . import selectors, services
from .exceptions import InvalidInput, StudyNotOpen
from .models import RatingStudy
from .services.judgments import MAX_COMMENT_CHARS, SCREEN_CHOICES


class IsClinician(BasePermission):
    message = "Only clinicians rate responses."

    def has_permission(self, request, view):
        return roles.is_clinician(request.user)


class IsResearcher(BasePermission):
    message = "Only researchers see study results."

    def has_permission(self, request, view):
        return roles.is_researcher(request.user)


class DoesNotRateInStudy(BasePermission):
    """A researcher who also rates in the study (``pk`` in the URL) is refused."""

    message = "You rate in this study, so its results are closed to you."

    def has_permission(self, request, view):
        return view.kwargs.get("pk") not in selectors.rated_study_ids(request.user)


class AnswersSerializer(serializers.Serializer):
    """Answers in screen terms. Validation of the dimensions is the service's."""

    choices = serializers.DictField(child=serializers.ChoiceField(choices=SCREEN_CHOICES, allow_blank=True), required=False,
                                    default=dict,
                                    help_text="left, right, tie or blank per dimension key of the item (``dimensions`` of "
                                              "GET items/{token}/); a key that is not one of them is refused with 400.")
    unsafe_left = StrictBooleanField(required=False, default=False)
    unsafe_right = StrictBooleanField(required=False, default=False)
    comment = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False,
                                    max_length=MAX_COMMENT_CHARS)
    time_on_task_ms = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0)


class JudgmentAnswersSerializer(AnswersSerializer):
    """A submitted answer: ``choices`` is required and must name every dimension of the item's study
    (``dimensions`` of GET items/{token}/), which is why a schema-valid body can still be refused with 400."""

    choices = serializers.DictField(child=serializers.ChoiceField(choices=SCREEN_CHOICES, allow_blank=True),
                                    help_text="One of left, right or tie for every dimension key of the item.")


def _answers(request, serializer_class=AnswersSerializer):
    serializer = serializer_class(data=request.data)
    if not serializer.is_valid():
        raise InvalidInput("the answers are malformed", errors=_serializer_errors(serializer))
    return serializer.validated_data


def _serializer_errors(serializer) -> list[str]:
    return [f"{field}: {' '.join(map(str, msgs))}" for field, msgs in serializer.errors.items()]


def _item_payload(page: dict) -> dict:
    return {
        "item": page["token"],
        "position": page["position"],
        "progress": page["progress"],
        "open": page["open"],
        "post": page["post"],
        "left": {"label": "Response A", "text": page["left_text"]},
        "right": {"label": "Response B", "text": page["right_text"]},
        "dimensions": [
            {"key": d["key"], "name": d["name"], "question": d["question"], "choice": d["choice"] or None}
            for d in page["dimensions"]
        ],
        "unsafe_left": page["unsafe_left"],
        "unsafe_right": page["unsafe_right"],
        "comment": page["comment"],
        "done": page["done"],
    }


class QueueApi(APIView):
    permission_classes = [IsAuthenticated, IsClinician]

    @extend_schema(summary="The clinician's studies, progress and next item", responses={200: dict, **error_responses(400, 403, 429)})
    def get(self, request):
        entries = selectors.clinician_queue(user=request.user)
        return Response({
            "studies": [
                {
                    "study": e["token"],
                    "title": e["title"],
                    "open": e["open"],
                    "done": e["progress"]["done"],
                    "total": e["progress"]["total"],
                    "next_item": e["next"].token if e["next"] else None,
                }
                for e in entries
            ]
        })


class _AssignmentApi(APIView):
    permission_classes = [IsAuthenticated, IsClinician]

    def assignment(self, request, token):
        return selectors.assignment_for_clinician(token=token, user=request.user)


class ItemApi(_AssignmentApi):
    @extend_schema(summary="One item as the clinician sees it", responses={200: dict, **error_responses(400, 403, 404, 409, 429)})
    def get(self, request, token):
        assignment = self.assignment(request, token)
        if not assignment.study.is_open:
            # A draft or closed study shows nothing of its items: no post, no responses, no answers.
            raise StudyNotOpen("this study is not open; its items are not shown")
        return Response(_item_payload(selectors.rating_page(assignment=assignment)))


class DraftApi(JsonOnlyMixin, _AssignmentApi):
    @extend_schema(summary="Autosave unfinished answers", request=AnswersSerializer,
                   responses={200: dict, **error_responses(400, 403, 404, 409, 415, 429)})
    def post(self, request, token):
        assignment = self.assignment(request, token)
        assignment = services.assignment_draft_save(assignment=assignment, clinician=request.user, **_answers(request))
        return Response({"saved": True, "saved_at": assignment.draft_saved_at.isoformat()})

    put = post


class JudgmentApi(JsonOnlyMixin, _AssignmentApi):
    @extend_schema(summary="Submit (or change) the answer for one item", request=JudgmentAnswersSerializer,
                   responses={200: dict, **error_responses(400, 403, 404, 409, 415, 429)})
    def post(self, request, token):
        assignment = self.assignment(request, token)
        services.judgment_submit(assignment=assignment, clinician=request.user,
                                 **_answers(request, JudgmentAnswersSerializer))
        following = selectors.assignment_next(study=assignment.study, user=request.user)
        return Response({
            "saved": True,
            "progress": selectors.clinician_progress(study=assignment.study, user=request.user),
            "next_item": following.token if following else None,
        })


class UndoApi(APIView):
    permission_classes = [IsAuthenticated, IsClinician]

    @extend_schema(summary="Withdraw the clinician's last answer in a study", request=None,
                   responses={200: dict, **error_responses(400, 403, 404, 409, 429)})
    def post(self, request, token):
        study = selectors.study_for_clinician(token=token, user=request.user)
        assignment = services.judgment_undo(study=study, clinician=request.user)
        return Response({"item": assignment.token})


class ResultsApi(APIView):
    permission_classes = [IsAuthenticated, IsResearcher, DoesNotRateInStudy]

    @extend_schema(summary="A study's results (researchers)", responses={200: dict, **error_responses(400, 403, 404, 429)})
    def get(self, request, pk):
        study = RatingStudy.objects.filter(pk=pk).select_related("source_a", "source_b", "criteria_set").first()
        if study is None:
            raise NotFound("No such study.")
        return Response(selectors.rating_study_results(study))


class JudgeImportSerializer(serializers.Serializer):
    judge_name = serializers.CharField(max_length=200, min_length=1)
    rows = serializers.ListField(child=serializers.DictField(), allow_empty=False, min_length=1,
                                 help_text="Each row names one of the study's items (item or scenario_id), a dimension "
                                           "(criterion) and a decision (choice, or model_a/model_b/majority); a row "
                                           "that names none of the study's items is refused with 400.")
    source_names = serializers.DictField(child=serializers.CharField(), required=False, default=dict)
    skip_unmatched = StrictBooleanField(required=False, default=False)


class JudgeImportApi(JsonOnlyMixin, APIView):
    permission_classes = [IsAuthenticated, IsResearcher, DoesNotRateInStudy]

    @extend_schema(summary="Import a judge's decisions on a study's items (researchers)", request=JudgeImportSerializer,
                   responses={201: dict, **error_responses(400, 403, 404, 415, 429)})
    def post(self, request, pk):
        study = RatingStudy.objects.filter(pk=pk).select_related("source_a", "source_b").first()
        if study is None:
            raise NotFound("No such study.")
        serializer = JudgeImportSerializer(data=request.data)
        if not serializer.is_valid():
            raise InvalidInput("the request is malformed; nothing was imported", errors=_serializer_errors(serializer))
        data = serializer.validated_data
        report = services.judge_decisions_import(
            study=study, judge_name=data["judge_name"], rows=data["rows"], source_names=data["source_names"],
            skip_unmatched=data["skip_unmatched"], actor=request.user,
        )
        return Response(report.as_dict(), status=status.HTTP_201_CREATED)
