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
# into script text (where HTML escaping would not be enough). Every progress element of a page
# shares one connection: the elements register while the page is parsed, and one client
# follows all their jobs once it is (an element added later widens the subscription).
PROGRESS_SCRIPT = mark_safe("""
(function (el) {
  "use strict";
  var hub = window.jobwireProgress || (window.jobwireProgress = {elements: [], client: null});
  function field(e, name) { return e.querySelector('[data-jobwire-field="' + name + '"]'); }
  function each(jobId, fn) {
    hub.elements.forEach(function (e) {
      if (jobId == null || e.getAttribute("data-jobwire-job") === jobId) fn(e);
    });
  }
  function show(e, job) {
    var pct = Math.round(job.progress || 0);
    e.setAttribute("data-status", job.status);
    e.setAttribute("data-progress", String(pct));
    e.querySelector("progress").value = pct;
    field(e, "percent").textContent = pct + " %";
    field(e, "status").textContent = job.status + (job.stalled ? " (stalled)" : "");
    field(e, "operation").textContent = job.currentOperation ||
      (job.error && job.error.message) || "";
  }
  function state(e, value) {
    e.setAttribute("data-state", value);
    if (!e.getAttribute("data-status") && !e.hasAttribute("data-error")) {
      field(e, "status").textContent = value === "open" ? "waiting…" : value + "…";
    }
  }
  function refused(e, code) {
    e.setAttribute("data-error", code || "error");
    if (code === "forbidden" || code === "unauthorized") {
      field(e, "status").textContent = "not available";
    }
  }
  function jobIds() {
    var ids = [];
    each(null, function (e) {
      var id = e.getAttribute("data-jobwire-job");
      if (ids.indexOf(id) < 0) ids.push(id);
    });
    return ids;
  }
  function connect() {
    // No token: cookie mode, the Django session signs the connection in.
    var client = hub.client = window.Jobwire.connect({jobIds: jobIds()});
    client.on("update", function (job) { each(job.jobId, function (e) { show(e, job); }); });
    client.on("state", function (c) { each(null, function (e) { state(e, c.state); }); });
    client.on("authenticated", function (who) {
      each(null, function (e) { e.setAttribute("data-user", who.userId || ""); });
    });
    client.on("error", function (err) {
      each(err.jobId, function (e) { refused(e, err.code); });
    });
    each(null, function (e) { e.jobwire = client; });
  }
  hub.elements.push(el);
  if (hub.client) {  // added after the page loaded
    el.jobwire = hub.client;
    hub.client.subscribe(jobIds());
    state(el, hub.client.state);
    if (hub.client.principal) el.setAttribute("data-user", hub.client.principal.userId || "");
    var known = hub.client.jobs.get(el.getAttribute("data-jobwire-job"));
    if (known) show(el, known);  // a job the page already follows sends nothing new
  } else if (!hub.waiting) {
    hub.waiting = true;
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", connect);
    else connect();
  }
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
