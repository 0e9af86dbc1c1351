/*! jobwire.js: the browser client of jobwire (live job status).
 *
 * One file, three ways to load it, no build step:
 *   - classic script:  <script src="/static/jobwire.js"></script>   → globalThis.Jobwire
 *   - ES module:       import { connect } from "/static/jobwire.mjs" (a thin re-export of the
 *                      same object; this file contains no `export`, so it stays a valid script)
 *   - SharedWorker:    the same URL is the worker that holds the one connection shared by every
 *                      tab of the origin (it detects SharedWorkerGlobalScope and starts the hub).
 * In Node (tests) it is a CommonJS module: require() it or import jobwire.mjs.
 *
 * One connection per browser and user (a token's; cookie mode does not share): the
 * SharedWorker's; where there is no SharedWorker (Chrome on Android), a leader tab's, elected
 * with Web Locks, whose events reach the other tabs over a BroadcastChannel; a tab that takes
 * over from a closed leader resumes from the cursor (TabGroup). Else, or with `shared: false`,
 * each page has its own.
 *
 * Where the server is: `url` if given, else where this file was loaded from less its
 * `/static/jobwire.js` (a jobwire mounted at /realtime serves /realtime/static/jobwire.js and
 * /realtime/ws/jobs), else the page's origin. Who the user is: a `token` (string or function),
 * or, without one, the page's cookies (the server's session or authentication hook); the
 * server's `authenticated` message then names the user.
 *
 * Transports, best first: websocket → sse → longpoll → poll. A transport that fails to open, or
 * dies, `fallback.maxFailures` times within `fallback.windowMs` while the server itself answers
 * /healthz is abandoned for the next allowed one; a probe every `probeIntervalMs` tries to go back
 * up. Reconnects use exponential backoff with full jitter (`backoffDelay`), reset on success;
 * close 1012 (server restarting) retries at once. Every (re)connect and switch resumes from the
 * last cursor; job events are de-duplicated by cursor per job.
 *
 * Liveness: a link can die without a close (no FIN, no RST), and a page cannot see WebSocket
 * pings. Any message shows the link alive (the server sends a heartbeat every
 * `heartbeatSeconds`, which `subscribed` carries); a WebSocket or SSE stream silent for
 * SILENT_BEATS intervals, or a long-poll answer that late past its wait, is dropped at once
 * (no closing handshake over a dead link) and reconnected like any failure.
 */
(function (root, factory) {
  "use strict";
  const api = root.Jobwire && root.Jobwire.version ? root.Jobwire : factory(root);
  root.Jobwire = api;
  if (typeof module === "object" && module && module.exports) module.exports = api;
  if (typeof SharedWorkerGlobalScope === "function" && root instanceof SharedWorkerGlobalScope &&
      !root.__jobwireHub) {
    root.__jobwireHub = api._startHub(root);
  }
})(typeof globalThis !== "undefined" ? globalThis : this, function (root) {
  "use strict";

  const VERSION = "1.0.0";
  const TRANSPORTS = Object.freeze(["websocket", "sse", "longpoll", "poll"]);
  const TERMINAL = new Set(["completed", "failed", "cancelled"]);
  const MAX_TIMER = 2 ** 31 - 1;
  // Silence allowed, in heartbeat intervals: two missed beats, and half an interval for delays.
  const SILENT_BEATS = 2.5;

  // Where this file was loaded from: the SharedWorker runs the same URL, and the server's
  // endpoints sit next to it. An ES-module import has no currentScript; jobwire.mjs then sets
  // Jobwire.scriptUrl from import.meta.url. Inside the SharedWorker, its own location is it.
  const loadedFrom = typeof document !== "undefined" && document.currentScript
    ? document.currentScript.src
    : typeof SharedWorkerGlobalScope === "function" && root instanceof SharedWorkerGlobalScope
      ? String(root.location.href) : null;
  // The library's path under the server's base: `<base>/static/jobwire.js` (or the .mjs).
  const OWN_PATH = /\/static\/jobwire\.m?js$/;

  // ---------------------------------------------------------------- pure helpers

  /** Full-jitter exponential backoff: a uniform delay in [0, min(capMs, baseMs·factor^attempt)).
   *  `attempt` counts failures since the last success, from 0. Pure: pass `random` to test. */
  function backoffDelay(attempt, options, random) {
    const o = options || {};
    const base = o.baseMs ?? 500;
    const cap = o.capMs ?? 30000;
    const factor = o.factor ?? 2;
    const n = attempt > 0 ? Math.floor(attempt) : 0;   // NaN, negatives: the first
    const ceiling = Math.min(cap, base * Math.pow(factor, n));
    const r = (random || Math.random)();
    return Math.floor(Math.min(Math.max(r, 0), 1) * ceiling);
  }

  /** The stateful side of the schedule: next() per failure, reset() after a success. */
  class Backoff {
    constructor(options, random) {
      this.options = options || {};
      this.random = random || Math.random;
      this.attempt = 0;
    }
    next() { return backoffDelay(this.attempt++, this.options, this.random); }
    reset() { this.attempt = 0; }
  }

  /** Order two event ids ("<ms>-<n>"); -1, 0 or 1. null sorts first. */
  function compareIds(a, b) {
    if (a === b) return 0;
    if (a == null) return -1;
    if (b == null) return 1;
    const ma = /^(\d+)-(\d+)$/.exec(a), mb = /^(\d+)-(\d+)$/.exec(b);
    if (ma && mb) {
      const d = Number(ma[1]) - Number(mb[1]) || Number(ma[2]) - Number(mb[2]);
      return d < 0 ? -1 : d > 0 ? 1 : 0;
    }
    if (a.length !== b.length) return a.length < b.length ? -1 : 1;
    return a < b ? -1 : 1;
  }

  /** The server's base URL (no trailing slash) that every endpoint hangs off.
   *  `url`: the caller's choice, absolute or relative to `origin` (the page's origin).
   *  Otherwise the URL this library was loaded from (`scriptUrl`), less its
   *  `/static/jobwire.js`, so a jobwire mounted under `/realtime` of a host app is found at
   *  `/realtime` without configuration. Otherwise `origin`, the server jobwire runs alone on.
   *  Pure: the page's values are passed in. */
  function resolveBase(url, scriptUrl, origin) {
    const strip = (u) => String(u).replace(/\/+$/, "");
    if (url) {
      try { return strip(new URL(url, origin || undefined).href); } catch (_) { return strip(url); }
    }
    if (scriptUrl) {
      let u = null;
      try { u = new URL(scriptUrl); } catch (_) { /* not a URL: ignore it */ }
      // Only http(s): a blob: or file: script says nothing about the server.
      if (u && /^https?:$/.test(u.protocol) && OWN_PATH.test(u.pathname)) {
        return u.origin + u.pathname.replace(OWN_PATH, "");
      }
    }
    return strip(origin || "");
  }

  /** The claims of a JWT, unverified (the server verifies): {sub, role, exp, ...} or null. */
  function decodeToken(token) {
    try {
      const part = String(token).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const json = atob(part + "=".repeat((4 - part.length % 4) % 4));
      return JSON.parse(decodeURIComponent(Array.from(json,
        (c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join("")));
    } catch (_) {
      return null;
    }
  }

  function isTerminal(state) {
    return state.type === "job_completed" || TERMINAL.has(state.status);
  }

  /** Current state per job, fed with events and snapshot states; drops what it has seen. */
  class JobStore {
    constructor() {
      this.jobs = new Map();
      this.cursor = null;
    }
    /** Apply an event or snapshot state. Returns the job's new state, or null for a duplicate
     *  or stale one (its id is not after the job's current id). */
    apply(ev) {
      if (!ev || typeof ev.jobId !== "string" || ev.id == null) return null;
      this.advance(ev.id);
      const cur = this.jobs.get(ev.jobId);
      if (cur && compareIds(ev.id, cur.id) <= 0) return null;
      let state;
      // A state relayed from another store (the shared connection's, a leader tab's) keeps
      // its original `type` and says what made it in `eventType`.
      if (ev.type === "job_stalled" || ev.eventType === "job_stalled") {
        state = Object.assign({status: "processing", progress: 0}, cur || {}, ev,
                              {stalled: true});
        if (cur) state.type = cur.type;
      } else {
        state = Object.assign({}, ev, {stalled: false});
      }
      state.eventType = ev.eventType || ev.type;
      this.jobs.set(ev.jobId, state);
      return state;
    }
    /** Move the resume cursor forward (never back). */
    advance(id) {
      if (id != null && id !== "0-0" && compareIds(id, this.cursor) > 0) this.cursor = id;
    }
    get(jobId) { return this.jobs.get(jobId); }
    list() { return Array.from(this.jobs.values()); }
  }

  function normalizeSub(sub) {
    if (!sub || sub === "all" || sub.all) return {all: true, jobIds: []};
    const ids = Array.isArray(sub) ? sub : sub.jobIds || [];
    return {all: false, jobIds: Array.from(new Set(ids.map(String))).sort()};
  }
  function sameSub(a, b) {
    return a.all === b.all && a.jobIds.join(",") === b.jobIds.join(",");
  }
  function wants(sub, jobId) {
    return sub.all || sub.jobIds.includes(jobId);
  }
  function unionSubs(subs) {
    if (subs.some((s) => s.all)) return {all: true, jobIds: []};
    return normalizeSub([].concat(...subs.map((s) => s.jobIds)));
  }

  const DEFAULTS = {
    transports: TRANSPORTS,
    backoff: {baseMs: 500, capMs: 30000, factor: 2},
    fallback: {maxFailures: 2, windowMs: 30000},
    probeIntervalMs: 60000,
    pingIntervalMs: 20000,
    heartbeatSeconds: null,
    idleTimeoutMs: 45000,
    longPollSeconds: 25,
    pollMaxIntervalMs: 10000,
    resumeSettleMs: 300,
  };

  function normalizeOptions(o) {
    const opts = Object.assign({}, DEFAULTS, o || {});
    opts.backoff = Object.assign({}, DEFAULTS.backoff, (o && o.backoff) || {});
    opts.fallback = Object.assign({}, DEFAULTS.fallback, (o && o.fallback) || {});
    const allowed = (opts.transports || TRANSPORTS).filter((t) => TRANSPORTS.includes(t));
    opts.transports = allowed.length ? allowed : TRANSPORTS.slice();
    opts.url = resolveBase(opts.url, api.scriptUrl || loadedFrom,
                           typeof location !== "undefined" ? location.origin : "");
    return opts;
  }

  // Only plain data crosses to the SharedWorker.
  function portableOptions(opts) {
    const out = {};
    for (const k of Object.keys(DEFAULTS).concat(["url", "refreshable", "cookies"])) {
      out[k] = opts[k];
    }
    return JSON.parse(JSON.stringify(out));
  }

  function sleepTimer(ms, fn) { return setTimeout(fn, Math.min(Math.max(0, ms), MAX_TIMER)); }

  // ---------------------------------------------------------------- transports
  // Each opener starts one connection and reports through engine._opened / _message / _closed
  // with its ctx; it returns {close(), send?()}.

  function openWebSocket(engine, ctx) {
    const url = engine.opts.url.replace(/^http/, "ws") + "/ws/jobs";
    let ws, watchdog = null, pinger = null;
    try {
      ws = new WebSocket(url);
    } catch (err) {
      queueMicrotask(() => engine._closed(ctx, {opened: false, reason: String(err)}));
      return {close() {}};
    }
    const drop = () => {
      clearTimeout(watchdog);
      clearInterval(pinger);
      ws.onclose = ws.onmessage = ws.onopen = null;
      try { ws.close(1000, "client closing"); } catch (_) { /* already closed */ }
    };
    // Silence: the link is dead. A close would wait for the server's answer, which cannot
    // come over a dead link: drop the socket and report it closed now.
    const feed = () => {
      clearTimeout(watchdog);
      watchdog = sleepTimer(engine._silenceMs(), () => {
        drop();
        engine._closed(ctx, {opened: ctx.opened, silent: true, reason: "heartbeats missed"});
      });
    };
    feed();   // also bounds the opening handshake
    ws.onopen = () => {
      // In-band auth keeps the token out of URLs and logs; then subscribe, resuming if we can.
      // Without a token (cookie mode) the handshake's cookies authenticated it: no auth.
      if (ctx.token) ws.send(JSON.stringify({type: "auth", token: ctx.token}));
      ws.send(JSON.stringify(engine._subscribeMessage(ctx)));
      engine._opened(ctx);
      feed();
      pinger = setInterval(() => {
        if (ws.readyState === 1) ws.send('{"type":"ping"}');
      }, engine.opts.pingIntervalMs);
    };
    ws.onmessage = (m) => {
      feed();
      let msg;
      try { msg = JSON.parse(m.data); } catch (_) { return; }
      engine._message(ctx, msg);
    };
    ws.onclose = (e) => {
      clearTimeout(watchdog);
      clearInterval(pinger);
      engine._closed(ctx, {opened: ctx.opened, code: e.code, reason: e.reason});
    };
    return {
      close: drop,
      send(msg) { if (ws.readyState === 1) ws.send(JSON.stringify(msg)); },
    };
  }

  function httpHeaders(token, extra) {
    return Object.assign(token ? {Authorization: "Bearer " + token} : {}, extra || {});
  }

  // Every HTTP request of the library: the page's cookies go along to its own origin only (a
  // cookie-mode login is a same-origin session; a token needs no cookie elsewhere).
  function request(url, token, extraHeaders, signal) {
    return fetch(url, {headers: httpHeaders(token, extraHeaders), credentials: "same-origin",
                       cache: "no-store", signal});
  }

  function jobIdsParam(ctx, params) {
    if (!ctx.sub.all) params.set("jobIds", ctx.sub.jobIds.join(","));
    return params;
  }

  function openSse(engine, ctx) {
    const ctrl = new AbortController();
    let watchdog = null;
    // Any bytes show the stream alive; silence aborts it (the read then fails: closed).
    const feed = () => {
      clearTimeout(watchdog);
      watchdog = sleepTimer(engine._silenceMs(), () => ctrl.abort());
    };
    feed();   // also bounds the wait for the answer's headers
    (async () => {
      const params = jobIdsParam(ctx, new URLSearchParams());
      if (ctx.resumeFrom) params.set("lastEventId", ctx.resumeFrom);
      let res;
      try {
        res = await request(engine.opts.url + "/api/v2/jobs/stream?" + params, ctx.token,
                            {Accept: "text/event-stream"}, ctrl.signal);
      } catch (err) {
        return engine._closed(ctx, {opened: false, reason: String(err)});
      }
      if (!res.ok || !res.body) {
        return engine._closed(ctx, {opened: false, status: res.status});
      }
      engine._opened(ctx);
      feed();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "", data = [];
      try {
        for (;;) {
          const {value, done} = await reader.read();
          if (done) break;
          feed();
          buffer += value;
          const lines = buffer.split(/\r\n|\r|\n/);
          buffer = lines.pop();
          for (const line of lines) {
            if (line === "") {
              if (data.length) {
                let msg = null;
                try { msg = JSON.parse(data.join("\n")); } catch (_) { /* not ours */ }
                data = [];
                if (msg) engine._message(ctx, msg);
              }
            } else if (line.startsWith("data:")) {
              data.push(line.slice(line[5] === " " ? 6 : 5));
            } // id: is also inside the JSON; retry: and comments are ignored
          }
        }
      } catch (err) {
        clearTimeout(watchdog);
        return engine._closed(ctx, {opened: true, reason: String(err)});
      }
      clearTimeout(watchdog);
      engine._closed(ctx, {opened: true, reason: "stream ended"});
    })();
    return {close() { clearTimeout(watchdog); ctx.closedByClient = true; ctrl.abort(); }};
  }

  async function fetchJson(url, ctx, ctrl, extraHeaders, timeoutMs) {
    const timer = sleepTimer(timeoutMs, () => ctrl.abort());
    try {
      const res = await request(url, ctx.token, extraHeaders, ctrl.signal);
      const body = res.status === 200 ? await res.json() : null;
      return {res, body};
    } finally {
      clearTimeout(timer);
    }
  }

  function openLongPoll(engine, ctx) {
    const ctrl = new AbortController();
    (async () => {
      let cursor = ctx.resumeFrom;
      for (let first = true; ; first = false) {
        const params = jobIdsParam(ctx, new URLSearchParams());
        // Resuming: ask once without waiting, so the replay (or nothing) comes at once and
        // the connection counts as open; then park for longPollSeconds.
        const wait = first && cursor ? 0 : engine.opts.longPollSeconds;
        params.set("timeout", String(wait));
        if (cursor) params.set("last_seen", cursor);
        let answer;
        try {
          // The server answers within `wait`: much later than that, the link is dead.
          answer = await fetchJson(engine.opts.url + "/api/v2/jobs/poll?" + params, ctx, ctrl,
                                   null, wait * 1000 + engine._overrunMs());
        } catch (err) {
          return engine._closed(ctx, {opened: ctx.opened, reason: String(err)});
        }
        if (ctx.dead) return;
        const {res, body} = answer;
        if (res.status !== 200 || !body) {
          return engine._closed(ctx, {opened: ctx.opened, status: res.status});
        }
        if (!ctx.opened) engine._opened(ctx);
        for (const e of body.errors || []) engine._message(ctx, e);
        if (body.jobs) {
          if (body.error) engine._message(ctx, Object.assign({type: "error"}, body.error));
          // A snapshot (first poll, or cursor_expired): the same shape as a `subscribed`.
          engine._message(ctx, {type: "subscribed", jobs: body.jobs, cursor: body.cursor,
                                principal: body.principal, fresh: true});
        } else if (!ctx.ready) {
          engine._message(ctx, {type: "subscribed", jobs: [], cursor: null, fresh: true});
        }
        for (const ev of body.events || []) engine._message(ctx, ev);
        engine.store.advance(body.cursor);
        cursor = engine.store.cursor || body.cursor;
      }
    })();
    return {close() { ctx.dead = true; ctrl.abort(); }};
  }

  function openPoll(engine, ctx) {
    const ctrl = new AbortController();
    let etag = null, timer = null;
    const once = async () => {
      const params = jobIdsParam(ctx, new URLSearchParams());
      let answer;
      try {
        answer = await fetchJson(engine.opts.url + "/api/v2/jobs/status?" + params, ctx, ctrl,
                                 etag ? {"If-None-Match": etag} : null, 30000);
      } catch (err) {
        return engine._closed(ctx, {opened: ctx.opened, reason: String(err)});
      }
      if (ctx.dead) return;
      const {res, body} = answer;
      if (res.status !== 200 && res.status !== 304) {
        return engine._closed(ctx, {opened: ctx.opened, status: res.status});
      }
      if (!ctx.opened) engine._opened(ctx);
      if (body) {
        etag = res.headers.get("ETag");
        engine._message(ctx, {type: "subscribed", jobs: body.jobs, cursor: body.cursor,
                              principal: body.principal, fresh: true});
      }
      const hint = Number(res.headers.get("Retry-After")) * 1000;
      const wait = Math.min(Math.max(hint || 1000, 1000), engine.opts.pollMaxIntervalMs);
      timer = sleepTimer(wait, once);
    };
    once();
    return {close() { ctx.dead = true; clearTimeout(timer); ctrl.abort(); }};
  }

  const OPENERS = {websocket: openWebSocket, sse: openSse, longpoll: openLongPoll,
                   poll: openPoll};

  // Probes: can this (better) transport be opened right now? Resolve true or false.
  function probe(engine, name, token) {
    const url = engine.opts.url;
    const timeout = 5000;
    if (name === "websocket") {
      return new Promise((resolve) => {
        let ws;
        const done = (ok) => {
          clearTimeout(t);
          if (ws) { ws.onclose = ws.onerror = ws.onmessage = null; try { ws.close(); } catch (_) { /**/ } }
          resolve(ok);
        };
        const t = sleepTimer(timeout, () => done(false));
        try { ws = new WebSocket(url.replace(/^http/, "ws") + "/ws/jobs"); } catch (_) { return done(false); }
        ws.onopen = () => {
          if (token) ws.send(JSON.stringify({type: "auth", token}));
          ws.send('{"type":"ping"}');
        };
        ws.onmessage = (m) => { if (String(m.data).includes('"pong"')) done(true); };
        ws.onclose = () => done(false);
      });
    }
    const path = {sse: "/api/v2/jobs/stream", longpoll: "/api/v2/jobs/poll?timeout=0",
                  poll: "/api/v2/jobs/status"}[name];
    const ctrl = new AbortController();
    const t = sleepTimer(timeout, () => ctrl.abort());
    return request(url + path, token, null, ctrl.signal)
      .then((res) => res.ok, () => false)
      .finally(() => { clearTimeout(t); ctrl.abort(); });
  }

  // ---------------------------------------------------------------- the engine
  // Owns the one live connection: choice of transport, reconnection, resume, de-duplication.
  // Runs in the SharedWorker (shared by tabs) or, without one, in the page.

  class Engine {
    constructor(options, sink, tokenSource) {
      this.opts = normalizeOptions(options);
      this.sink = sink;                 // (type, detail) => void
      this.tokenSource = tokenSource;   // (force) => Promise<string>
      this.store = new JobStore();
      this.sub = {all: true, jobIds: []};
      this.level = 0;
      this.failures = [];
      this.backoff = new Backoff(this.opts.backoff);
      this.gen = 0;
      this.ctx = null;
      this.conn = null;
      this.timer = null;
      this.probeTimer = null;
      this.refreshTimer = null;
      this.state = "idle";
      this.token = null;
      this.principal = null;            // from the server's `authenticated`
      this.sessionRetry = false;        // cookie mode: may retry once after a 401/4401
      this.stopped = true;
      this.serverHeartbeat = null;      // seconds, from `subscribed`
    }

    get transport() { return this.opts.transports[this.level]; }

    /** The heartbeat interval (s): the option's, else the server's, else null (unknown). */
    get heartbeatSeconds() { return this.opts.heartbeatSeconds || this.serverHeartbeat; }

    /** How long a stream may stay silent before its link counts as dead. */
    _silenceMs() {
      const beat = this.heartbeatSeconds;
      return beat ? SILENT_BEATS * beat * 1000 : this.opts.idleTimeoutMs;
    }

    /** How late past its wait a long-poll answer may be before its link counts as dead. */
    _overrunMs() {
      const beat = this.heartbeatSeconds;
      return beat ? SILENT_BEATS * beat * 1000 : 15000;
    }

    start() {
      if (!this.stopped) return;
      this.stopped = false;
      // The transport first: a state names its transport, and a page that heard of it there
      // first would take it for a change of no stated reason.
      this.sink("transport", {transport: this.transport, previous: null, reason: "start"});
      this._setState("connecting");
      this._connect(0);
      this._scheduleProbe();
    }

    stop() {
      this.stopped = true;
      this._drop();
      clearTimeout(this.timer);
      clearTimeout(this.probeTimer);
      clearTimeout(this.refreshTimer);
      this._setState("closed");
    }

    setSubscription(sub) {
      const next = normalizeSub(sub);
      if (sameSub(next, this.sub)) return;
      this.sub = next;
      if (!this.stopped && (this.conn || this.ctx)) this._restart();
    }

    setToken(token) {
      this.token = token;
      this._scheduleRefresh(token);
      if (this.state === "unauthorized") {
        this._setState("reconnecting");
        this._connect(0);
      }
    }

    // -- connection lifecycle

    _drop() {
      this.gen++;
      if (this.ctx) clearTimeout(this.ctx.settle);
      this.ctx = null;
      if (this.conn) this.conn.close();
      this.conn = null;
    }

    _restart() {
      this._drop();
      this._setState("reconnecting");
      this._connect(0);
    }

    _connect(delay) {
      clearTimeout(this.timer);
      this.timer = sleepTimer(delay, () => this._open());
    }

    async _open() {
      if (this.stopped) return;
      const gen = ++this.gen;
      let token;
      try {
        token = await this._token(false);
      } catch (err) {
        if (gen !== this.gen || this.stopped) return;
        this.sink("error", {code: "token_unavailable", message: String(err && err.message || err)});
        this._setState("reconnecting");
        return this._connect(this.backoff.next());
      }
      if (gen !== this.gen || this.stopped) return;
      const name = this.transport;
      const ctx = {gen, transport: name, token, sub: this.sub, opened: false, openedAt: 0,
                   ready: false, resumeFrom: this.store.cursor, pending: null};
      this.ctx = ctx;
      this.conn = OPENERS[name](this, ctx);
    }

    _live(ctx) { return ctx && ctx === this.ctx && ctx.gen === this.gen && !this.stopped; }

    _opened(ctx) {
      if (!this._live(ctx)) return;
      ctx.opened = true;
      ctx.openedAt = Date.now();
    }

    _ready(ctx) {
      if (ctx.ready) return;
      ctx.ready = true;
      this.sessionRetry = true;
      this.backoff.reset();
      this._setState("open");
    }

    /** The server's word on who this connection is: the only one in cookie mode. Told once,
     *  and again only if it changes (a refreshed token's new expiry). */
    _learnPrincipal(msg) {
      const next = {userId: msg.userId ?? null, role: msg.role || "user",
                    expiresAt: msg.expiresAt ?? null};
      const now = this.principal;
      if (now && now.userId === next.userId && now.role === next.role
          && now.expiresAt === next.expiresAt) return;
      this.principal = next;
      this.sink("authenticated", next);
    }

    _subscribeMessage(ctx) {
      const msg = ctx.sub.all ? {type: "subscribe", all: true}
        : {type: "subscribe", jobIds: ctx.sub.jobIds};
      if (ctx.resumeFrom) msg.lastEventId = ctx.resumeFrom;
      return msg;
    }

    _message(ctx, msg) {
      if (!this._live(ctx) || !msg || typeof msg !== "object") return;
      switch (msg.type) {
        case "heartbeat": case "pong": case "unsubscribed":
          return;
        case "authenticated":
          this._learnPrincipal(msg);
          return;
        case "error":
          if (msg.code === "cursor_expired") ctx.expired = true;
          this.sink("error", msg);
          if (msg.code === "unavailable" && !ctx.ready) {
            // The server's broker failed mid-subscribe: nothing will follow on this
            // connection. Retry from the same cursor, as after a 503.
            if (this.conn) this.conn.close();
            this._closed(ctx, {opened: ctx.opened, unavailable: true});
          }
          return;
        case "subscribed": {
          // Every transport's snapshot names the user too: SSE and HTTP have no `authenticated`.
          if (msg.principal && typeof msg.principal === "object") this._learnPrincipal(msg.principal);
          const jobs = Array.isArray(msg.jobs) ? msg.jobs : [];
          if (typeof msg.heartbeatSeconds === "number" && msg.heartbeatSeconds > 0) {
            this.serverHeartbeat = msg.heartbeatSeconds;
          }
          if (ctx.resumeFrom && !ctx.expired && !msg.fresh) {
            // Resuming: replayed events (ids up to msg.cursor) follow and the snapshot already
            // shows their result. Hold the snapshot so that each event is shown once, in order;
            // apply what the replay did not cover once it is over.
            ctx.pending = new Map(jobs.map((j) => [j.jobId, j]));
            ctx.pendingCursor = msg.cursor;
            ctx.settle = sleepTimer(this.opts.resumeSettleMs, () => this._flush(ctx));
          } else {
            for (const state of jobs) this._apply(state);
            this.store.advance(msg.cursor);
          }
          this._ready(ctx);
          return;
        }
        default:
          if (typeof msg.jobId !== "string" || msg.id == null) return;
          if (ctx.pending) {
            if (compareIds(msg.id, ctx.pendingCursor) > 0) {
              this._flush(ctx);
            } else {
              const held = ctx.pending.get(msg.jobId);
              if (held && compareIds(msg.id, held.id) >= 0) ctx.pending.delete(msg.jobId);
            }
          }
          this._apply(msg);
      }
    }

    _flush(ctx) {
      if (!ctx.pending) return;
      clearTimeout(ctx.settle);
      const held = ctx.pending;
      ctx.pending = null;
      if (!this._live(ctx)) return;
      for (const state of held.values()) this._apply(state);
      this.store.advance(ctx.pendingCursor);
    }

    _apply(ev) {
      const state = this.store.apply(ev);
      if (state) {
        this.sink("update", state);
        if (isTerminal(state) && ev.type !== "job_stalled") this.sink("completed", state);
      }
    }

    async _closed(ctx, info) {
      if (!this._live(ctx) || ctx.closedHandled) return;
      ctx.closedHandled = true;
      clearTimeout(ctx.settle);
      this.gen++;
      this.ctx = null;
      this.conn = null;
      const gen = this.gen;
      if (info.code === 4401 || info.status === 401) return this._unauthorized(gen);
      if (info.status === 403) {
        this.sink("error", {code: "forbidden", message: "this " +
                            (this.opts.cookies ? "session" : "token") + " may not read job status"});
        return this.stop();
      }
      if (info.code === 1008 || info.code === 1009) {
        this.sink("error", {code: "policy", message: info.reason || "closed " + info.code});
      }
      this._setState("reconnecting");
      // A broker outage behind a reachable server is no fault of this transport.
      if (info.unavailable) return this._connect(this.backoff.next());
      if (info.code === 1012 || info.code === 4000) {
        // Server restarting / we were too slow: reconnect now and resume from the cursor.
        return this._connect(info.code === 1012 ? 0 : this.backoff.next());
      }
      // 404/405: this server has the transport turned off. Otherwise: is the server reachable?
      // If not, it is an outage, not the transport's fault: keep it and back off.
      const refused = info.status === 404 || info.status === 405;
      const reachable = refused || (info.status >= 500 ? true : await this._reachable());
      if (gen !== this.gen || this.stopped) return;
      if (reachable) {
        const now = Date.now();
        const w = this.opts.fallback.windowMs;
        this.failures = this.failures.filter((t) => now - t < w).concat([now]);
        if ((refused || this.failures.length >= this.opts.fallback.maxFailures) &&
            this.level < this.opts.transports.length - 1) {
          return this._switch(this.level + 1, refused ? "unavailable" : "failing");
        }
      }
      this._connect(this.backoff.next());
    }

    async _reachable() {
      const ctrl = new AbortController();
      const t = sleepTimer(3000, () => ctrl.abort());
      try {
        const res = await request(this.opts.url + "/healthz", null, null, ctrl.signal);
        return res.ok;
      } catch (_) {
        return false;
      } finally {
        clearTimeout(t);
      }
    }

    async _unauthorized(gen) {
      if (this.opts.cookies) return this._sessionRefused(gen);
      const old = this.token;
      let fresh = null;
      try { fresh = await this._token(true); } catch (_) { /* no better token */ }
      if (gen !== this.gen || this.stopped) return;
      if (fresh && fresh !== old) {
        this._setState("reconnecting");
        return this._connect(0);
      }
      this.sink("error", {code: "unauthorized", message: "the token was refused or has expired"});
      this._setState("unauthorized");
    }

    // Cookie mode: nothing to refresh here. A session that worked may have been renewed by the
    // app since (a sliding expiry): one fresh attempt, then give up until setToken/reconnect.
    _sessionRefused(gen) {
      if (gen !== this.gen || this.stopped) return;
      if (this.sessionRetry) {
        this.sessionRetry = false;
        this._setState("reconnecting");
        return this._connect(0);
      }
      this.sink("error", {code: "unauthorized", message: "the session was refused or has ended"});
      this._setState("unauthorized");
    }

    _switch(level, reason) {
      const previous = this.transport;
      this._drop();
      this.level = level;
      this.failures = [];
      this.backoff.reset();
      this.sink("transport", {transport: this.transport, previous, reason});
      this._setState("reconnecting");
      this._scheduleProbe();
      this._connect(0);
    }

    _scheduleProbe() {
      clearTimeout(this.probeTimer);
      if (this.level === 0 || this.stopped) return;
      this.probeTimer = sleepTimer(this.opts.probeIntervalMs, async () => {
        let token;
        try { token = await this._token(false); } catch (_) { return this._scheduleProbe(); }
        for (let i = 0; i < this.level; i++) {
          if (await probe(this, this.opts.transports[i], token)) {
            if (!this.stopped && i < this.level) return this._switch(i, "upgrade");
          }
        }
        this._scheduleProbe();
      });
    }

    // -- tokens

    async _token(force) {
      if (this.opts.cookies) return null;     // the page's cookies authenticate
      if (!force && this.token) {
        const claims = decodeToken(this.token);
        if (!claims || !claims.exp || claims.exp * 1000 > Date.now() + 1000) return this.token;
      }
      const token = await this.tokenSource(force);
      if (!token) throw new Error("no token");
      if (token !== this.token) {
        this.token = token;
        this._scheduleRefresh(token);
      }
      return token;
    }

    _scheduleRefresh(token) {
      clearTimeout(this.refreshTimer);
      const claims = decodeToken(token);
      if (!this.opts.refreshable || !claims || !claims.exp) return;
      const remaining = claims.exp * 1000 - Date.now();
      const margin = Math.min(60000, Math.max(1000, remaining * 0.2));
      this.refreshTimer = sleepTimer(remaining - margin, async () => {
        let fresh;
        try { fresh = await this._token(true); } catch (_) { return; }
        if (this.stopped || !this.ctx) return;
        if (this.ctx.transport === "websocket" && this.conn && this.conn.send) {
          this.ctx.token = fresh;
          this.conn.send({type: "auth", token: fresh});     // refresh without reconnecting
        } else if (this.ctx.transport === "sse") {
          this._restart();                                   // the stream ends at expiry
        } else {
          this.ctx.token = fresh;                            // used by the next request
        }
      });
    }

    _setState(state) {
      if (state === this.state) return;
      this.state = state;
      this.sink("state", {state, transport: this.transport});
    }
  }

  // ---------------------------------------------------------------- the shared hub (worker side)

  function _startHub(scope) {
    const tabs = new Map();        // tab id → {port, sub, last}
    const asks = new Map();        // request id → resolve
    let engine = null;
    let asked = 0;

    const send = (tab, msg) => { try { tab.port.postMessage(msg); } catch (_) { /* gone */ } };
    const sink = (type, detail) => {
      for (const tab of tabs.values()) {
        if ((type === "update" || type === "completed") && !wants(tab.sub, detail.jobId)) continue;
        send(tab, {t: "event", type, detail});
      }
    };
    const tokenSource = async (force) => {
      const list = Array.from(tabs.values()).sort((a, b) => b.last - a.last);
      for (const tab of list) {
        const id = ++asked;
        const token = await new Promise((resolve) => {
          asks.set(id, resolve);
          send(tab, {t: "token?", id, force});
          sleepTimer(10000, () => resolve(null));
        });
        asks.delete(id);
        if (token) return token;
      }
      throw new Error("no tab could provide a token");
    };
    const resubscribe = () => {
      if (engine) engine.setSubscription(unionSubs(Array.from(tabs.values()).map((t) => t.sub)));
    };
    const remove = (id) => {
      if (!tabs.delete(id)) return;
      if (tabs.size === 0 && engine) {
        engine.stop();
        engine = null;
      } else {
        resubscribe();
      }
    };

    scope.onconnect = (e) => {
      const port = e.ports[0];
      let tabId = null;
      port.onmessage = (m) => {
        const msg = m.data || {};
        if (msg.t === "hello") {
          tabId = msg.id;
          const tab = {port, sub: normalizeSub(msg.sub), last: Date.now()};
          tabs.set(tabId, tab);
          if (!engine) {
            engine = new Engine(msg.options, sink, tokenSource);
            engine.sub = unionSubs([tab.sub]);
            engine.setToken(msg.token);
            engine.start();
          } else {
            if (msg.token) engine.setToken(msg.token);
            resubscribe();
          }
          send(tab, {t: "init", state: engine.state, transport: engine.transport,
                     principal: engine.principal, jobs: engine.store.list().filter((j) => wants(tab.sub, j.jobId))});
          if (scope.navigator && scope.navigator.locks && msg.lock) {
            // Granted only when the tab is gone (it holds this lock for its lifetime).
            scope.navigator.locks.request(msg.lock, () => remove(tabId));
          }
        } else if (msg.t === "sub" && tabs.has(tabId)) {
          tabs.get(tabId).sub = normalizeSub(msg.sub);
          resubscribe();
          const tab = tabs.get(tabId);
          for (const j of engine.store.list()) {
            if (wants(tab.sub, j.jobId)) send(tab, {t: "event", type: "update", detail: j});
          }
        } else if (msg.t === "token") {
          const resolve = asks.get(msg.id);
          if (resolve) resolve(msg.token);
          if (tabs.has(tabId)) tabs.get(tabId).last = Date.now();
        } else if (msg.t === "bye") {
          remove(tabId);
        }
      };
      if (port.start) port.start();
    };
    return {tabs, get engine() { return engine; }};
  }

  // ---------------------------------------------------------------- sharing without SharedWorker

  /** The key of one shared connection: base URL, user and role, so that two users signed in to
   *  one browser never share. The SharedWorker's name, the leader lock's and the channel's. */
  function sharedName(base, principal) {
    const p = principal || {};
    return ["jobwire", base, p.userId, p.role].join(" ");
  }

  /** Where a new leader resumes: the oldest cursor the tabs report (null, "0-0" and non-ids
   *  ignored: a tab that has seen nothing yet holds no one back); null if none. The oldest,
   *  because a tab may not yet have received the old leader's last events: resuming before
   *  them costs only repeats, which every tab's store drops; resuming after them could lose
   *  them for that tab. Pure. */
  function resumeCursor(ids) {
    let oldest = null;
    for (const id of ids || []) {
      if (typeof id !== "string" || id === "0-0") continue;
      if (oldest === null || compareIds(id, oldest) < 0) oldest = id;
    }
    return oldest;
  }

  function canElect(scope) {
    return !!(scope.navigator && scope.navigator.locks &&
              typeof scope.navigator.locks.request === "function" &&
              typeof scope.BroadcastChannel === "function");
  }

  /** Take the Web Lock `name` and hold it until the returned release() is called. */
  function holdLock(name) {
    return new Promise((granted, failed) => {
      root.navigator.locks.request(name, () => new Promise((release) => granted(release)))
        .catch(failed);
    });
  }

  // How long a new leader waits for the other tabs' cursors before it connects.
  const GATHER_MS = 250;

  /** One tab's part in a group of tabs sharing a connection without a SharedWorker (Chrome on
   *  Android). The tabs of one user elect a leader with a Web Lock, which the leader holds for
   *  its lifetime; the leader runs the Engine for the union of every tab's jobs and relays what
   *  it says over a BroadcastChannel of the same name. When the leader's tab goes, its lock is
   *  released and the tab waiting longest takes over: it asks the others where they are and
   *  resumes from the oldest cursor (resumeCursor), and each tab's own JobStore drops what it
   *  already applied, so every event is shown once per tab. Each tab also holds a lock of its
   *  own for its lifetime; the others wait on it to learn, without a message, that the tab is
   *  gone (its jobs leave the union).
   *
   *  Messages: {t, from, cursor?, ...}: "hello"/"sub" (a tab's jobs and cursor), "bye",
   *  "elected" (a new leader asks for them again), "init" (to one tab: the connection's state
   *  and its jobs), "event" (the Engine's sink, to every tab). */
  class TabGroup {
    constructor(client, name, opts, token) {
      this.client = client;
      this.name = name;
      this.opts = opts;
      this.token = token;
      this.id = tabId();
      this.peers = new Map();        // tab id → its subscription
      this.cursor = null;            // the leader's cursor, as of its last event here
      this.engine = null;            // while leading
      this.closed = false;
      this.abort = new AbortController();   // cancels this tab's waiting lock requests
      this.channel = new root.BroadcastChannel(name);
      this.channel.onmessage = (m) => this._receive(m.data || {});
    }

    get leading() { return !!this.engine; }

    async start() {
      // Own lock first: a peer that hears our hello may wait on it at once.
      this.releaseTab = await holdLock(this.name + " tab " + this.id);
      if (this.closed) return this.releaseTab();
      this._post({t: "hello", sub: this.client._sub, cursor: this.cursor});
      root.navigator.locks.request(this.name, {signal: this.abort.signal}, () => this._lead())
        .catch(() => { /* aborted: closed while waiting */ });
    }

    /** The tab's jobs changed: the leader follows the union; a follower tells the leader. */
    resubscribe() {
      if (this.engine) {
        this.engine.setSubscription(this._union());
        for (const j of this.engine.store.list()) this.client._fromShared("update", j);
      } else {
        this._post({t: "sub", sub: this.client._sub, cursor: this.cursor});
      }
    }

    close() {
      if (this.closed) return;
      this.closed = true;            // first: stopping the engine says nothing to the others
      this.abort.abort();
      if (this.engine) this.engine.stop();
      this._post({t: "bye"});
      this.channel.close();
      if (this.releaseLeader) this.releaseLeader();
      if (this.releaseTab) this.releaseTab();
    }

    // Granted the leader lock: gather the others' cursors, connect, hold the lock until closed.
    async _lead() {
      if (this.closed) return;
      const cursors = [this.cursor];
      await new Promise((done) => {
        const waiting = new Set(this.peers.keys());
        this.onAnswer = (id, cursor) => {
          cursors.push(cursor);
          waiting.delete(id);
          if (!waiting.size) done();
        };
        if (!waiting.size) done();
        sleepTimer(GATHER_MS, done);
        this._post({t: "elected"});
      });
      this.onAnswer = null;
      // The token this tab started with may be old by now: ask its source again.
      try { this.token = await this.client._token(false) || this.token; } catch (_) { /**/ }
      if (this.closed) return;
      const engine = new Engine(this.opts, (type, detail) => this._fromEngine(type, detail),
                                (force) => this.client._token(force));
      engine.sub = this._union();
      engine.store.advance(resumeCursor(cursors));
      engine.setToken(this.token);
      this.engine = engine;
      engine.start();
      for (const id of this.peers.keys()) this._init(id);
      return new Promise((release) => { this.releaseLeader = release; });
    }

    _union() {
      return unionSubs([this.client._sub].concat(Array.from(this.peers.values())));
    }

    _post(msg) {
      if (this.closed && msg.t !== "bye") return;
      try { this.channel.postMessage(Object.assign({from: this.id}, msg)); } catch (_) { /**/ }
    }

    _fromEngine(type, detail) {
      if (this.closed) return;
      this.cursor = this.engine.store.cursor;
      this._post({t: "event", type, detail, cursor: this.cursor});
      this.client._fromShared(type, detail);
    }

    _init(id) {
      const e = this.engine, sub = this.peers.get(id);
      if (!e || !sub) return;
      this._post({t: "init", to: id, state: e.state, transport: e.transport,
                  principal: e.principal, cursor: this.cursor,
                  jobs: e.store.list().filter((j) => wants(sub, j.jobId))});
    }

    // Wait on a peer's own lock: granted when its tab is gone.
    _watch(id) {
      if (this.peers.has(id)) return;
      root.navigator.locks.request(this.name + " tab " + id, {signal: this.abort.signal},
                                   () => this._forget(id))
        .catch(() => { /* aborted: this tab closed first */ });
    }

    _forget(id) {
      if (this.peers.delete(id) && this.engine) this.engine.setSubscription(this._union());
    }

    _receive(msg) {
      if (this.closed || !msg.from || msg.from === this.id) return;
      // The leader's cursor: from its events, and from the state it gives a tab that joins.
      if ((msg.t === "event" || (msg.t === "init" && msg.to === this.id)) && !this.engine &&
          compareIds(msg.cursor, this.cursor) > 0) {
        this.cursor = msg.cursor;
      }
      switch (msg.t) {
        case "hello": case "sub":
          this._watch(msg.from);
          this.peers.set(msg.from, normalizeSub(msg.sub));
          if (this.onAnswer) this.onAnswer(msg.from, msg.cursor);
          if (this.engine) {
            this.engine.setSubscription(this._union());
            this._init(msg.from);
          }
          return;
        case "bye":
          return this._forget(msg.from);
        case "elected":
          return this._post({t: "hello", sub: this.client._sub, cursor: this.cursor});
        case "init":
          if (msg.to === this.id && !this.engine) this.client._joined(msg);
          return;
        case "event":
          // A new leader may get the lock before the old one's last events: they still count
          // (the store drops what it has). The old leader's word on the connection does not.
          if (!this.engine || msg.type === "update") this.client._fromShared(msg.type, msg.detail);
          return;
      }
    }
  }

  function tabId() { return Math.random().toString(36).slice(2) + Date.now().toString(36); }

  // ---------------------------------------------------------------- the page-side client

  class JobwireClient {
    constructor(options) {
      this.options = Object.assign({}, options || {});
      // No token: cookie mode, the page's session cookies authenticate every request.
      this.cookies = this.options.token == null;
      this.store = new JobStore();
      this.state = "idle";
      this.transport = null;
      this.shared = false;
      this.principal = null;
      this._listeners = new Map();
      this._sub = normalizeSub(this.options.jobIds ? this.options.jobIds : "all");
      this._closed = false;
      this.ready = this._start().catch((err) => {
        this._emit("error", {code: "start_failed", message: String(err && err.message || err)});
      });
    }

    /** Listen: "update" | "completed" | "authenticated" | "transport" | "state" | "error".
     *  Returns an unsubscribe. */
    on(type, fn) {
      if (!this._listeners.has(type)) this._listeners.set(type, new Set());
      this._listeners.get(type).add(fn);
      return () => this.off(type, fn);
    }
    off(type, fn) { const s = this._listeners.get(type); if (s) s.delete(fn); }

    /** The jobs to follow: "all", or an array of job ids (replaces the current choice). */
    subscribe(target) {
      this._sub = normalizeSub(target);
      if (this._engine) this._engine.setSubscription(this._sub);
      if (this._port) this._port.postMessage({t: "sub", sub: this._sub});
      if (this._group) this._group.resubscribe();
    }

    get jobs() { return this.store.jobs; }

    /** True while this tab holds the connection shared with the other tabs (Web Locks). */
    get leading() { return !!(this._group && this._group.leading); }

    close() {
      if (this._closed) return;
      this._closed = true;
      if (this._engine) this._engine.stop();
      if (this._group) this._group.close();
      if (this._port) { this._port.postMessage({t: "bye"}); this._port.close(); }
      if (this._releaseLock) this._releaseLock();
      if (this._onPageHide) root.removeEventListener("pagehide", this._onPageHide);
      this._setState("closed");
    }

    async _token(force) {
      const t = this.options.token;
      return typeof t === "function" ? await t({force: !!force}) : t;
    }

    async _start() {
      const token = this.cookies ? null : await this._token(false);
      if (!this.cookies) {
        // Provisional, from the token itself; the server's `authenticated` confirms it.
        const claims = decodeToken(token) || {};
        this.principal = {userId: claims.sub || null, role: claims.role || "user"};
      }
      const opts = normalizeOptions(Object.assign({}, this.options,
        {refreshable: typeof this.options.token === "function", cookies: this.cookies}));
      const url = this.options.workerUrl || api.scriptUrl || loadedFrom;
      if (this._closed) return;
      // The shared connection is keyed by user, known in advance only from a token. A
      // cookie-mode page learns its user only once connected, and a sign-in as someone else in
      // another tab would join the previous user's connection: it does not share.
      // Best first: a SharedWorker; else (Chrome on Android) a leader tab elected with Web
      // Locks; else a connection per tab.
      const sharing = !this.cookies && this.options.shared !== false;
      if (sharing && typeof SharedWorker === "function" && url) {
        try {
          await this._startShared(url, opts, token);
          return;
        } catch (_) {
          /* no usable SharedWorker: try the next way */
        }
      }
      if (sharing && canElect(root)) {
        try {
          await this._startElected(opts, token);
          return;
        } catch (_) {
          /* locks or channels refused here (an opaque origin): run in the page */
        }
      }
      this._startLocal(opts, token);
    }

    async _startElected(opts, token) {
      if (this._closed) return;
      const group = new TabGroup(this, sharedName(opts.url, this.principal), opts, token);
      this._group = group;
      this.shared = true;
      try {
        await group.start();
      } catch (err) {
        this._group = null;
        this.shared = false;
        group.close();
        throw err;
      }
    }

    _startLocal(opts, token) {
      if (this._closed) return;
      this.shared = false;
      this._engine = new Engine(opts, (type, detail) => this._fromEngine(type, detail),
                                (force) => this._token(force));
      this._engine.sub = this._sub;
      this._engine.setToken(token);
      this._engine.start();
    }

    async _startShared(url, opts, token) {
      const worker = new SharedWorker(url, {name: sharedName(opts.url, this.principal)});
      const port = worker.port;
      const id = tabId();
      const lock = "jobwire-tab-" + id;
      if (root.navigator && root.navigator.locks) {
        await new Promise((granted) => {
          root.navigator.locks.request(lock, () => new Promise((release) => {
            this._releaseLock = release;
            granted();
          }));
        });
      }
      const inited = new Promise((resolve, reject) => {
        const t = sleepTimer(5000, () => reject(new Error("shared worker did not answer")));
        this._onInit = () => { clearTimeout(t); resolve(); };
        worker.onerror = () => { clearTimeout(t); reject(new Error("shared worker failed")); };
      });
      port.onmessage = (m) => this._fromHub(m.data || {});
      port.start();
      port.postMessage({t: "hello", id, lock, sub: this._sub, token,
                        options: portableOptions(opts)});
      this._port = port;
      try {
        await inited;
      } catch (err) {
        this._port = null;
        port.close();
        if (this._releaseLock) this._releaseLock();
        throw err;
      }
      this.shared = true;
      this._onPageHide = () => { if (this._port) this._port.postMessage({t: "bye"}); };
      root.addEventListener("pagehide", this._onPageHide);
    }

    _fromHub(msg) {
      if (this._closed) return;
      if (msg.t === "init") {
        if (this._onInit) this._onInit();
        if (msg.principal) this._fromEngine("authenticated", msg.principal);
        this._fromEngine("transport", {transport: msg.transport, previous: null, reason: "shared"});
        for (const j of msg.jobs) this._fromEngine("update", j);
        this._setState(msg.state, msg.transport);
      } else if (msg.t === "event") {
        this._fromEngine(msg.type, msg.detail);
      } else if (msg.t === "token?") {
        this._token(msg.force).then((token) => token, () => null)
          .then((token) => this._port && this._port.postMessage({t: "token", id: msg.id, token}));
      }
    }

    // Tabs sharing a leader's connection: the leader's Engine follows every tab's jobs.
    _fromShared(type, detail) {
      if (this._closed) return;
      if ((type === "update" || type === "completed") && !wants(this._sub, detail.jobId)) return;
      this._fromEngine(type, detail);
    }

    // The leader's answer to this tab's hello (or to a change of its jobs).
    _joined(msg) {
      if (this._closed) return;
      const p = msg.principal, now = this.principal || {};
      if (p && (p.userId !== now.userId || p.role !== now.role || p.expiresAt !== now.expiresAt)) {
        this._fromEngine("authenticated", p);
      }
      if (msg.transport) {
        this._fromEngine("transport", {transport: msg.transport, previous: null, reason: "shared"});
      }
      for (const j of msg.jobs || []) this._fromShared("update", j);
      this._setState(msg.state, msg.transport);
    }

    _fromEngine(type, detail) {
      if (type === "update") {
        const state = this.store.apply(detail);
        if (!state) return;
        this._emit("update", state);
        if (isTerminal(state) && detail.eventType !== "job_stalled") this._emit("completed", state);
      } else if (type === "completed") {
        // derived from "update" above, once per tab
      } else if (type === "authenticated") {
        this.principal = Object.assign({}, detail);
        this._emit("authenticated", this.principal);
      } else if (type === "state") {
        this._setState(detail.state, detail.transport);
      } else if (type === "transport") {
        if (detail.transport === this.transport) return;
        this.transport = detail.transport;
        this._emit("transport", detail);
      } else {
        this._emit(type, detail);
      }
    }

    _setState(state, transport) {
      if (transport && transport !== this.transport) {
        const previous = this.transport;
        this.transport = transport;
        this._emit("transport", {transport, previous, reason: "state"});
      }
      if (state === this.state) return;
      this.state = state;
      this._emit("state", {state, transport: this.transport});
    }

    _emit(type, detail) {
      const set = this._listeners.get(type);
      if (!set) return;
      for (const fn of Array.from(set)) {
        try { fn(detail); } catch (err) { setTimeout(() => { throw err; }); }
      }
    }
  }

  /** Connect with `{token?, jobIds?, transports?, shared?, url?, backoff?, fallback?, ...}`;
   *  without a token the page's cookies authenticate (cookie mode). */
  function connect(options) { return new JobwireClient(options); }

  const api = {
    version: VERSION, TRANSPORTS, DEFAULTS, connect, JobwireClient, Engine, JobStore, Backoff,
    backoffDelay, compareIds, decodeToken, resolveBase, sharedName, resumeCursor, scriptUrl: null,
    _startHub,
  };
  return api;
});
