// jobwire/react: React hooks over one jobwire connection per provider.
//
//   <JobwireProvider options={{url, token}}>  opens the connection when it mounts and closes it
//                                             when it unmounts; every hook below shares it
//   useJob(jobId)   → {job, status, progress, done, connection, transport, principal, error}
//   useJobs()       → {jobs, connection, transport, principal, error}
//   useConnection() → {connection, transport, principal, error, shared, client}
//   useJobwireClient() → the JobwireClient (null until the provider has connected)
//
// Reads go through useSyncExternalStore, so a render never sees a torn state; a component
// re-renders only when what it reads changes (useJob: its job; useJobs: any job).
import {
  createContext, createElement, useContext, useEffect, useRef, useState, useSyncExternalStore,
} from "react";
import { connect, JobwireClient } from "../dist/jobwire.mjs";

const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const CLIENT_EVENTS = ["state", "transport", "authenticated", "error"];

/** A connection and the snapshots React reads from it. Creating one has no effect: it connects
 *  on `start` (from an effect), so a render React throws away leaves nothing open. */
class LiveConnection {
  constructor() {
    this.client = null;
    this.owned = false;             // opened here (closed here), or the app's own client
    this.key = null;                // the options it was opened with, as compared
    this.listeners = new Set();
    this.unlisten = [];
    this.closeTimer = null;
    this.error = null;
    this.jobList = [];
    this.jobsChanged = false;       // jobList is rebuilt when next read, not on every event
    this.status = this._status();
    this.notifyQueued = false;
  }

  /** Open a connection for `options` (or adopt `client`); the same one again is a no-op,
   *  and cancels a close still pending (StrictMode unmounts and remounts at once). */
  start(key, open) {
    clearTimeout(this.closeTimer);
    this.closeTimer = null;
    if (this.client && this.key === key) return;
    this._close();
    const { client, owned } = open();
    this.client = client;
    this.owned = owned;
    this.key = key;
    this.error = null;
    this.unlisten = CLIENT_EVENTS.map((type) => client.on(type, (detail) => {
      if (type === "error") this.error = detail;
      this._changed(false);
    }));
    this.unlisten.push(client.on("update", () => this._changed(true)));
    this._changed(true);
  }

  /** Close soon: a remount in the same task (StrictMode, a moved provider) keeps it open. */
  stop() {
    clearTimeout(this.closeTimer);
    this.closeTimer = setTimeout(() => { this._close(); this._changed(true); }, 0);
  }

  _close() {
    for (const off of this.unlisten) off();
    this.unlisten = [];
    if (this.client && this.owned) this.client.close();
    this.client = null;
    this.key = null;
  }

  subscribe = (listener) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  job(jobId) { return this.client ? this.client.jobs.get(jobId) : undefined; }
  jobs = () => {
    if (this.jobsChanged) {
      this.jobsChanged = false;
      this.jobList = this.client ? Array.from(this.client.jobs.values()) : [];
    }
    return this.jobList;
  };
  connection = () => this.status;

  _status() {
    const c = this.client;
    return {
      connection: c ? c.state : "idle",
      transport: c ? c.transport : null,
      principal: c ? c.principal : null,
      error: this.error,
      shared: c ? c.shared : false,
      client: c,
    };
  }

  // The status snapshot is rebuilt at once (a render in between reads the new state);
  // listeners are told once per task, so a snapshot of many jobs re-renders once, not per job.
  _changed(jobs) {
    if (jobs) this.jobsChanged = true;
    const next = this._status();
    if (Object.keys(next).some((k) => next[k] !== this.status[k])) this.status = next;
    if (this.notifyQueued) return;
    this.notifyQueued = true;
    queueMicrotask(() => {
      this.notifyQueued = false;
      for (const listener of Array.from(this.listeners)) listener();
    });
  }
}

const Context = createContext(null);

function useLive(hook) {
  const live = useContext(Context);
  if (!live) throw new Error(`jobwire/react: ${hook} must be used inside <JobwireProvider>`);
  return live;
}

// What decides the connection: every option but the token function, which may be a new
// function on each render and is always called through the latest one (see tokenRef).
function optionsKey(options) {
  return JSON.stringify(options, (name, value) =>
    typeof value === "function" ? `[function ${name}]` : value);
}

/** One jobwire connection for the components below it. `options` are `connect`'s (a new
 *  object on each render is fine: it reconnects only when their values change); or pass
 *  `client`, a JobwireClient of your own, which the provider uses and never closes. */
export function JobwireProvider({ options, client, children }) {
  if (client != null && !(client instanceof JobwireClient)) {
    throw new TypeError("jobwire/react: JobwireProvider's client must be a JobwireClient " +
                        "(from jobwire's connect())");
  }
  if (client == null && options != null && (typeof options !== "object" || Array.isArray(options))) {
    throw new TypeError("jobwire/react: JobwireProvider's options must be an object of " +
                        "connect() options");
  }
  const [live] = useState(() => new LiveConnection());
  const latest = useRef(options);
  latest.current = options;
  const key = client ? null : optionsKey(options || {});

  useEffect(() => {
    live.start(client || key, () => {
      if (client) return { client, owned: false };
      const opts = Object.assign({}, latest.current);
      if (typeof opts.token === "function") {
        opts.token = (info) => latest.current.token(info);    // the latest render's function
      }
      return { client: connect(opts), owned: true };
    });
    return () => live.stop();
  }, [live, client, key]);

  return createElement(Context.Provider, { value: live }, children);
}

/** The connection's state: `connection` ("idle", "connecting", "open", "reconnecting",
 *  "unauthorized", "closed"), `transport`, `principal`, the last `error`, `shared`, `client`. */
export function useConnection() {
  const live = useLive("useConnection");
  return useSyncExternalStore(live.subscribe, live.connection, live.connection);
}

/** The JobwireClient of the nearest provider, for its events; null until it has connected. */
export function useJobwireClient() {
  return useConnection().client;
}

/** One job's live state. `jobId` may be null or undefined while it is not known yet. */
export function useJob(jobId) {
  if (jobId != null && typeof jobId !== "string") {
    throw new TypeError(`jobwire/react: useJob(jobId) takes a string job id, not ${typeof jobId}`);
  }
  const live = useLive("useJob");
  const read = () => (jobId == null ? undefined : live.job(jobId));
  const job = useSyncExternalStore(live.subscribe, read, read);
  const status = useSyncExternalStore(live.subscribe, live.connection, live.connection);
  return {
    job,
    status: job ? job.status : null,
    progress: job ? job.progress : null,
    done: job ? TERMINAL.has(job.status) : false,
    connection: status.connection,
    transport: status.transport,
    principal: status.principal,
    error: status.error,
  };
}

/** Every job the connection follows (by default every job the user may see), in the order
 *  they were first seen. */
export function useJobs() {
  const live = useLive("useJobs");
  const jobs = useSyncExternalStore(live.subscribe, live.jobs, live.jobs);
  const status = useSyncExternalStore(live.subscribe, live.connection, live.connection);
  return {
    jobs,
    connection: status.connection,
    transport: status.transport,
    principal: status.principal,
    error: status.error,
  };
}
