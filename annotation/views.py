from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render

from core import roles


@login_required
def queue(request):
    if not roles.is_clinician(request.user):
        raise PermissionDenied("Only clinicians rate responses.")
    return render(request, "annotation/queue.html", {"items": []})
