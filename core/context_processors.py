from django.conf import settings


def support(request):
    return {"study_name": settings.ATTUNE_STUDY_NAME}
