from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from .tasks import crawl

RECENT = 10


@login_required
@require_http_methods(["GET", "POST"])
def index(request):
    if request.method == "POST":
        site = request.POST.get("site") or "https://example.org/"
        # No owner passed: CeleryOwnerMiddleware makes request.user the job's owner.
        result = crawl.delay(site, pages=settings.CRAWL_PAGES, delay=settings.CRAWL_DELAY)
        request.session["jobs"] = [result.id, *request.session.get("jobs", [])][:RECENT]
        return redirect("job", job_id=result.id)
    return render(request, "crawler/index.html", {"jobs": request.session.get("jobs", [])})


@login_required
def job(request, job_id):
    # Whose job it is, jobwire decides: another user's page shows it as not available.
    return render(request, "crawler/job.html", {"job_id": job_id})
