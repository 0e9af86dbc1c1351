// The jobs page: a "Start job" button that asks the app to start one, and a live list of this
// user's jobs from jobwire.js. No token: the page's session cookie is the sign-in.
"use strict";

const $ = (id) => document.getElementById(id);
const items = new Map();     // jobId → {li, bar, text}

// For tests and debugging: every job event shown, in order, and who jobwire says we are.
window.jobEvents = [];
window.jobwireUser = null;

const live = Jobwire.connect();     // every job of the signed-in user, from where it was loaded
window.jobwire = live;

live.on("authenticated", (who) => {
  window.jobwireUser = who;
  document.body.dataset.user = who.userId;
});
live.on("state", ({state, transport}) => {
  document.body.dataset.state = state;
  $("connection").textContent = state === "open" ? `Live (${transport})`
    : state === "unauthorized" ? "Signed out: reload the page" : "Connecting…";
});
live.on("update", (job) => {
  window.jobEvents.push({jobId: job.jobId, seq: job.seq, status: job.status,
                         progress: job.progress});
  show(job);
});

function show(job) {
  let item = items.get(job.jobId);
  if (!item) {
    const li = document.createElement("li");
    li.dataset.job = job.jobId;
    const text = document.createElement("div");
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.setAttribute("aria-label", `Progress of ${job.jobId}`);
    li.append(text, bar);
    $("jobs").prepend(li);
    item = {li, bar, text};
    items.set(job.jobId, item);
    $("empty").hidden = true;
  }
  const pct = Math.round(Number(job.progress) || 0);
  item.li.dataset.status = job.status;
  item.bar.value = pct;
  item.text.textContent = `${job.jobId}: ${job.status}, ${pct}%` +
    (job.currentOperation ? ` (${job.currentOperation})` : "");
}

$("start").addEventListener("click", async () => {
  $("start").disabled = true;
  try {
    const res = await fetch("/jobs", {method: "POST", headers: {"Content-Type": "application/json"},
                                      body: "{}"});
    if (!res.ok) throw new Error(`the app answered ${res.status}`);
    const {jobId} = await res.json();
    document.body.dataset.lastJob = jobId;
  } catch (err) {
    $("connection").textContent = `Could not start a job: ${err.message}`;
  } finally {
    $("start").disabled = false;
  }
});
