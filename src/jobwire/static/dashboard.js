// The live jobs dashboard: sign in with a token (or be signed in by the host app's session
// cookie), then one row per job, updated live through jobwire.js (shared by every tab of this
// origin when signed in with a token). No framework; data only via textContent.
// Every URL is relative (this page may be served under a prefix, such as /realtime/):
// jobwire.mjs finds the server's endpoints from where it was loaded.
import { connect, decodeToken } from "./jobwire.mjs";

const KEY = "jobwire_token";
const $ = (id) => document.getElementById(id);
const rows = new Map();        // jobId → {tr, cells..., start, state}
let client = null;
let principal = null;

// Debug and test hooks: every job event this page applied, in order, and the client.
window.jobwireEvents = [];

// ---------------------------------------------------------------- sign-in

function takeTokenFromUrl() {
  const url = new URL(location.href);
  const token = url.searchParams.get("token");
  if (token === null) return;
  url.searchParams.delete("token");
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  if (token.trim()) localStorage.setItem(KEY, token.trim());
}

function showSignIn(message) {
  $("jobs-panel").hidden = true;
  $("who").hidden = true;
  $("signin-panel").hidden = false;
  if (message) $("signin-message").textContent = message;
  $("token").focus();
}

function signOut(message) {
  if (client) client.close();
  client = null;
  localStorage.removeItem(KEY);
  for (const row of rows.values()) row.tr.remove();
  rows.clear();
  window.jobwireEvents.length = 0;
  setConnection("closed", null);
  updateSummary();
  showSignIn(message || "Signed out. Paste a token to sign in again.");
}

function showJobs() {
  $("signin-panel").hidden = true;
  $("jobs-panel").hidden = false;
  if (!principal) return;          // cookie mode over SSE or polling: the server did not say
  const admin = principal.role === "admin";
  document.body.classList.toggle("admin", admin);
  $("filters").hidden = !admin;
  $("who-name").textContent = principal.userId || "";
  $("who-role").textContent = principal.role;
  $("who").hidden = false;
  $("jobs-title").textContent = admin ? "All jobs" : "Your jobs";
  $("jobs-table").caption.textContent = `${admin ? "All" : "Your"} jobs, updated live`;
}

function start() {
  if (client) client.close();
  client = null;
  const token = localStorage.getItem(KEY);
  if (!token) return startWithCookies();
  const claims = decodeToken(token);
  if (!claims || !claims.sub) {
    localStorage.removeItem(KEY);
    return showSignIn("That does not look like a jobwire token. Paste the whole token.");
  }
  principal = {userId: claims.sub, role: claims.role || "user"};
  $("signout").hidden = false;
  showJobs();
  // A token callback: read again before expiry and after a refusal, so a fresh sign-in in
  // another tab is picked up without reconnecting by hand.
  follow(connect({token: () => localStorage.getItem(KEY) || token}));
  client.on("error", (err) => {
    if (err.code === "unauthorized") {
      signOut("Your token was refused or has expired. Sign in again.");
    } else if (err.code === "forbidden" && !err.jobId) {
      signOut("This token may not read job status.");
    }
  });
}

// No token: the host app's session cookie may sign this page in. The form stays up meanwhile
// (a server without sessions or a hook refuses only after its auth timeout on a WebSocket);
// the jobs replace it once the server accepts the connection.
function startWithCookies() {
  principal = null;
  showSignIn();
  $("signout").hidden = true;      // the host app owns the session, not this page
  follow(connect({}));
  const mine = client;
  client.on("authenticated", (who) => {
    principal = who;
    showJobs();
  });
  client.on("state", ({state}) => { if (state === "open") showJobs(); });
  client.on("error", (err) => {
    if (err.code === "unauthorized") {
      mine.close();
      if (client === mine) showSignIn();
    } else if (err.code === "forbidden" && !err.jobId) {
      mine.close();
      if (client === mine) showSignIn("This session may not read job status.");
    }
  });
}

function follow(c) {
  client = c;
  window.jobwire = client;
  client.on("update", (job) => {
    window.jobwireEvents.push({jobId: job.jobId, seq: job.seq, id: job.id, status: job.status,
                               type: job.eventType});
    render(job);
  });
  client.on("state", ({state, transport}) => setConnection(state, transport));
  client.on("transport", ({transport}) => setConnection(c.state, transport));
}

// ---------------------------------------------------------------- connection line

const STATE_TEXT = {idle: "Starting", connecting: "Connecting", open: "Live",
                    reconnecting: "Reconnecting…", unauthorized: "Signed out", closed: "Not connected"};
const TRANSPORT_TEXT = {websocket: "WebSocket", sse: "Server-Sent Events",
                        longpoll: "long-polling", poll: "polling"};

function setConnection(state, transport) {
  document.body.dataset.state = state;
  document.body.dataset.transport = transport || "";
  $("conn-state").textContent = STATE_TEXT[state] || state;
  $("conn-transport").textContent = TRANSPORT_TEXT[transport] || "—";
  $("conn-transport").dataset.transport = transport || "";
}

// ---------------------------------------------------------------- rows

function cell(tr, cls, label) {
  const td = document.createElement("td");
  td.setAttribute("role", "cell");          // see the table's roles in index.html
  if (cls) td.className = cls;
  td.dataset.label = label;
  tr.append(td);
  return td;
}

function createRow(jobId) {
  const tr = document.createElement("tr");
  tr.setAttribute("role", "row");
  tr.dataset.job = jobId;
  const row = {tr};
  row.job = cell(tr, "job", "Job");
  row.job.textContent = jobId;
  row.user = cell(tr, "user col-user", "User");
  row.badge = document.createElement("span");
  cell(tr, "status", "Status").append(row.badge);
  const progress = cell(tr, "", "Progress");
  const wrap = document.createElement("div");
  wrap.className = "progress";
  row.bar = document.createElement("div");
  row.bar.className = "bar";
  row.bar.setAttribute("role", "progressbar");
  row.bar.setAttribute("aria-valuemin", "0");
  row.bar.setAttribute("aria-valuemax", "100");
  row.bar.setAttribute("aria-label", `Progress of ${jobId}`);
  row.fill = document.createElement("span");
  row.fill.className = "fill";
  row.bar.append(row.fill);
  row.pct = document.createElement("span");
  row.pct.className = "pct num";
  wrap.append(row.bar, row.pct);
  progress.append(wrap);
  row.op = cell(tr, "op", "Operation");
  row.elapsed = cell(tr, "num elapsed", "Elapsed");
  row.eta = cell(tr, "num eta", "ETA");
  row.finished = cell(tr, "num finished", "Finished");
  $("jobs").prepend(tr);
  rows.set(jobId, row);
  return row;
}

function render(job) {
  const row = rows.get(job.jobId) || createRow(job.jobId);
  noteStart(row, job);
  row.state = job;
  row.receivedAt = Date.now();
  const status = job.stalled ? "stalled" : job.status;
  row.tr.dataset.status = job.status;
  row.user.textContent = job.userId || "";
  row.badge.className = `badge ${status}`;
  row.badge.textContent = status;
  const pct = Math.max(0, Math.min(100, Number(job.progress) || 0));
  row.bar.className = `bar ${job.status}`;
  row.bar.setAttribute("aria-valuenow", String(Math.round(pct)));
  row.fill.style.width = `${pct}%`;
  row.pct.textContent = `${Math.round(pct)}%`;
  row.op.textContent = operationText(job);
  row.tr.classList.remove("flash");
  void row.tr.offsetWidth;          // restart the highlight animation
  row.tr.classList.add("flash");
  tick(row);
  applyFilter(row);
  updateSummary();
}

function operationText(job) {
  if (job.stalled) return `No update since ${clockTime(Date.parse(job.lastUpdate))}`;
  if (job.status === "failed" && job.error) {
    const e = job.error;
    return "Failed: " + (typeof e === "string" ? e : e.message || JSON.stringify(e));
  }
  if (job.status === "completed" && job.result && typeof job.result === "object") {
    const parts = Object.entries(job.result).slice(0, 4).map(([k, v]) => `${k}: ${v}`);
    return (job.currentOperation ? job.currentOperation + " — " : "Done — ") + parts.join(", ");
  }
  return job.currentOperation || (job.status === "queued" ? "Waiting for a worker" : "");
}

// When the job started: every event carries `createdAt`, the timestamp of the job's first
// event, so any one state says it, even for a job that ended before this page opened. A job
// stored by a server without it has no known start (shown as unknown, never guessed).
function noteStart(row, job) {
  const created = job.createdAt ? Date.parse(job.createdAt) : NaN;
  if (!Number.isNaN(created)) row.start = created;
}

function isTerminal(job) {
  return job.status === "completed" || job.status === "failed" || job.status === "cancelled";
}

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

// A moment as local wall-clock time; with the date too unless it is today.
function clockTime(ms) {
  const date = new Date(ms);
  if (date.toDateString() === new Date().toDateString()) return date.toLocaleTimeString();
  return date.toLocaleString(undefined, {dateStyle: "medium", timeStyle: "medium"});
}

// "—" on screen; `spoken` for screen readers, and as a tooltip.
function showUnknown(td, spoken) {
  if (td.title === spoken) return;          // unchanged since the last tick
  const dash = document.createElement("span");
  dash.setAttribute("aria-hidden", "true");
  dash.textContent = "—";
  const words = document.createElement("span");
  words.className = "visually-hidden";
  words.textContent = spoken;
  td.replaceChildren(dash, words);
  td.title = spoken;
}

function showText(td, text) {
  if (!td.title && td.textContent === text) return;
  td.textContent = text;
  td.removeAttribute("title");
}

function showTime(td, ms) {
  const iso = new Date(ms).toISOString();
  const text = clockTime(ms);
  const shown = td.querySelector("time");
  if (shown && shown.dateTime === iso && shown.textContent === text) return;
  const time = document.createElement("time");
  time.dateTime = iso;
  time.textContent = text;
  td.replaceChildren(time);
  td.removeAttribute("title");
}

function elapsedText(row, end) {
  return row.start !== undefined ? duration((end - row.start) / 1000) : null;
}

function tick(row) {
  const job = row.state;
  const terminal = isTerminal(job);
  const ended = terminal ? Date.parse(job.timestamp) : Date.now();
  const elapsed = Number.isNaN(ended) ? null : elapsedText(row, ended);
  if (elapsed === null) showUnknown(row.elapsed, "not known: the server did not say when it started");
  else showText(row.elapsed, elapsed);
  if (!terminal) showUnknown(row.finished, "not yet");
  else if (Number.isNaN(ended)) showUnknown(row.finished, "time not known");
  else showTime(row.finished, ended);
  if (job.status === "processing" && !job.stalled && job.etaSeconds != null) {
    const left = job.etaSeconds - (Date.now() - row.receivedAt) / 1000;
    showText(row.eta, left <= 0 ? "any moment" : "~" + duration(left));
  } else if (terminal) {
    showUnknown(row.eta, "none: ended");
  } else {
    showText(row.eta, job.status === "queued" ? "not started" : "unknown");
  }
}

setInterval(() => { for (const row of rows.values()) tick(row); }, 1000);

// ---------------------------------------------------------------- filter and summary

function matches(row) {
  const text = $("filter-text").value.trim().toLowerCase();
  const status = $("filter-status").value;
  const job = row.state;
  if (text && !job.jobId.toLowerCase().includes(text) &&
      !(job.userId || "").toLowerCase().includes(text)) return false;
  if (status === "active") return job.status === "queued" || job.status === "processing";
  if (status === "failed") return job.status === "failed" || job.status === "cancelled";
  if (status) return job.status === status;
  return true;
}

function applyFilter(row) { row.tr.hidden = !matches(row); }

function updateSummary() {
  const all = Array.from(rows.values());
  const shown = all.filter((r) => !r.tr.hidden).length;
  const active = all.filter((r) => ["queued", "processing"].includes(r.state.status)).length;
  $("empty").hidden = shown > 0;
  $("empty").textContent = all.length ? "No job matches the filter."
    : "No jobs yet. New jobs appear here as soon as they start.";
  $("summary").textContent = all.length === 0 ? "" :
    `${shown === all.length ? all.length : `${shown} of ${all.length}`} ` +
    `job${all.length === 1 ? "" : "s"}, ${active} active`;
}

function refilter() {
  for (const row of rows.values()) applyFilter(row);
  updateSummary();
}

// ---------------------------------------------------------------- wiring

$("signin").addEventListener("submit", (e) => {
  e.preventDefault();
  const token = $("token").value.trim();
  if (!token) return;
  $("token").value = "";
  localStorage.setItem(KEY, token);
  start();
});
$("signout").addEventListener("click", () => signOut());
$("filter-text").addEventListener("input", refilter);
$("filter-status").addEventListener("change", refilter);
$("filters").addEventListener("submit", (e) => e.preventDefault());

takeTokenFromUrl();
setConnection("idle", null);
start();
