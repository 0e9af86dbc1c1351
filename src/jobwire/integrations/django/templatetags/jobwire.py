"""`{% load jobwire %}`:

- `{% jobwire_script %}`: the `<script>` that loads jobwire.js from the jobwire mount
  (JOBWIRE_SCRIPT_URL; by default JOBWIRE_PREFIX + "/static/jobwire.js").
- `{% jobwire_progress job_id %}`: a live progress element for one job, signed in by the
  session cookie. Optional `label="…"` names it for screen readers; `nonce=…` goes on its
  inline `<script>` for a Content-Security-Policy.

The element shows the job's state in data attributes, for styling and tests: `data-status`
(queued, processing, completed, failed, cancelled; empty until known), `data-progress`
(0-100), `data-state` (the connection: connecting, open, reconnecting, unauthorized),
`data-user` (the jobwire user id the server signed in) and `data-error` (`forbidden` for
someone else's job).

The markup is built here rather than in a template file, so the app needs no template
directory and works as installed from a wheel.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from .. import conf

register = template.Library()

# Static: it reads the job id back from its element, so nothing a user chose is ever spliced
# into script text (where HTML escaping would not be enough).
PROGRESS_SCRIPT = mark_safe("""
(function (el) {
  "use strict";
  // Cookie mode (no token): the Django session signs the connection in; `authenticated`
  // says as whom. Only this job is followed; jobwire refuses someone else's.
  var jobId = el.getAttribute("data-jobwire-job");
  var bar = el.querySelector("progress");
  function field(name) { return el.querySelector('[data-jobwire-field="' + name + '"]'); }
  function show(job) {
    var pct = Math.round(job.progress || 0);
    el.setAttribute("data-status", job.status);
    el.setAttribute("data-progress", String(pct));
    bar.value = pct;
    field("percent").textContent = pct + " %";
    field("status").textContent = job.status + (job.stalled ? " (stalled)" : "");
    field("operation").textContent = job.currentOperation ||
      (job.error && job.error.message) || "";
  }
  function start() {
    var jobs = window.Jobwire.connect({jobIds: [jobId]});
    el.jobwire = jobs;
    jobs.on("update", function (job) { if (job.jobId === jobId) show(job); });
    jobs.on("state", function (change) {
      el.setAttribute("data-state", change.state);
      if (!el.getAttribute("data-status") && !el.hasAttribute("data-error")) {
        field("status").textContent = change.state === "open" ? "waiting…" : change.state + "…";
      }
    });
    jobs.on("authenticated", function (who) { el.setAttribute("data-user", who.userId || ""); });
    jobs.on("error", function (err) {
      if (err.jobId && err.jobId !== jobId) return;
      el.setAttribute("data-error", err.code || "error");
      if (err.code === "forbidden" || err.code === "unauthorized") {
        field("status").textContent = "not available";
      }
    });
  }
  if (window.Jobwire) start();
  else window.addEventListener("DOMContentLoaded", start);  // jobwire.js comes later
})(document.currentScript.previousElementSibling);
""")


@register.simple_tag
def jobwire_script() -> SafeString:
    return format_html('<script src="{}"></script>', conf.script_url())


@register.simple_tag
def jobwire_progress(job_id: Any, label: str = "", nonce: str = "") -> SafeString:
    nonce_attr = format_html(' nonce="{}"', nonce) if nonce else ""
    return format_html(
        '<div class="jobwire-progress" data-jobwire-job="{job}" data-state="connecting" '
        'data-status="" data-progress="0">'
        '<progress max="100" value="0" aria-label="{label}"></progress> '
        '<span data-jobwire-field="percent">0 %</span> '
        '<span data-jobwire-field="status">connecting…</span> '
        '<span data-jobwire-field="operation"></span></div>'
        '<script{nonce}>{script}</script>',
        job=str(job_id), label=label or "Job progress", nonce=nonce_attr,
        script=PROGRESS_SCRIPT)
