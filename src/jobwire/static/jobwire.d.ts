// Types for jobwire.js (classic script: globalThis.Jobwire) and jobwire.mjs (ES module).

export type TransportName = "websocket" | "sse" | "longpoll" | "poll";
export type JobStatus = "queued" | "processing" | "completed" | "failed" | "cancelled";
export type ConnectionState =
  | "idle" | "connecting" | "open" | "reconnecting" | "unauthorized" | "closed";

/** A job's current state, as carried by its latest event (extra keys may appear). */
export interface JobState {
  type: "status_update" | "job_completed";
  /** The event's cursor: ordered, opaque, never purely digits. */
  id: string;
  /** Per job: 1 for its first event, +1 per event. */
  seq: number;
  jobId: string;
  userId: string;
  status: JobStatus;
  progress: number;
  currentOperation: string | null;
  timestamp: string;
  /** The `timestamp` of the job's first event: when it began (null from older servers). */
  createdAt: string | null;
  workerId: string | null;
  etaSeconds: number | null;
  result?: unknown;
  error?: unknown;
  /** True after a `job_stalled` event, until the job's next update. */
  stalled: boolean;
  /** Set while stalled: the time of the last real update. */
  lastUpdate?: string;
  /** The type of the event that produced this state ("job_stalled" included). */
  eventType: string;
  [extra: string]: unknown;
}

export interface JobwireError {
  code: string;
  message?: string;
  jobId?: string;
  field?: string;
  [extra: string]: unknown;
}

export interface TransportChange {
  transport: TransportName;
  previous: TransportName | null;
  /** "start", "unavailable" (404), "failing" (repeated failures), "upgrade" (a probe succeeded),
   *  "shared" (joined the connection of the SharedWorker or of the leader tab). */
  reason: string;
}

/** Who the server says the connection is (its `authenticated` message). */
export interface Principal {
  userId: string | null;
  role: string;
  /** Unix seconds; null if it never expires; absent while only known from a token. */
  expiresAt?: number | null;
}

export interface StateChange {
  state: ConnectionState;
  transport: TransportName | null;
}

export interface BackoffOptions {
  /** First ceiling, ms (500). */
  baseMs?: number;
  /** Largest ceiling, ms (30000). */
  capMs?: number;
  /** Growth per attempt (2). */
  factor?: number;
}

export type TokenSource = string | ((info: { force: boolean }) => string | Promise<string>);

export interface ConnectOptions {
  /** A token, or a function called for one at start, again before it expires, and after the
   *  server refused one. With a plain string the client stops at "unauthorized" on expiry.
   *  Omitted: cookie mode. Requests carry the page's cookies (same-origin) and no token; the
   *  server's app session or authentication hook decides, and the `authenticated` event names
   *  the user. A cookie-mode client does not share its connection with other tabs. */
  token?: TokenSource;
  /** Follow these jobs only; default: every job the user may see. */
  jobIds?: string[];
  /** The server's base URL (absolute, or relative to the page), e.g. "/realtime"; default:
   *  where jobwire.js was loaded from less its `/static/jobwire.js`, else the page's origin. */
  url?: string;
  /** Allowed transports in order of preference; default all four. */
  transports?: TransportName[];
  /** Share one connection between the tabs of this origin and user (default true): through a
   *  SharedWorker; where there is none (Chrome on Android), a leader tab elected with Web Locks
   *  holds it and relays its events over a BroadcastChannel, and another tab takes over,
   *  resuming from the cursor, when the leader's tab closes; without either, the connection
   *  lives in each page. false: a connection of this page's own. */
  shared?: boolean;
  /** The URL of jobwire.js, for the SharedWorker; found automatically. */
  workerUrl?: string;
  backoff?: BackoffOptions;
  /** Abandon a transport after maxFailures (2) failures within windowMs (30000) while the server
   *  answers /healthz; at once if the endpoint answers 404/405. */
  fallback?: { maxFailures?: number; windowMs?: number };
  /** How often to try the better transports again after a fallback (60000). */
  probeIntervalMs?: number;
  /** WebSocket application ping interval (20000). */
  pingIntervalMs?: number;
  /** The server's heartbeat interval, seconds; null (default): as the server says in
   *  `subscribed` (`heartbeatSeconds`). Any message shows a link alive: a WebSocket or SSE
   *  stream silent for 2.5 intervals (two missed heartbeats), or a long-poll answer that late
   *  past its wait, is dropped and reconnected with backoff, resuming from the cursor. */
  heartbeatSeconds?: number | null;
  /** Reconnect a WebSocket or SSE stream silent for this long while the heartbeat interval is
   *  unknown (45000); also the longest wait for a stream to open. */
  idleTimeoutMs?: number;
  /** Long-poll wait, seconds (25). Without a known heartbeat interval an answer may be 15 s
   *  late before the link counts as dead. */
  longPollSeconds?: number;
  /** Longest wait between regular polls, whatever Retry-After says (10000). */
  pollMaxIntervalMs?: number;
  /** After a resume, how long to wait for replayed events before applying the snapshot (300). */
  resumeSettleMs?: number;
}

export interface JobwireEvents {
  /** A job changed (an event or a snapshot state not seen before; duplicates are dropped). */
  update: JobState;
  /** A job reached completed, failed or cancelled. */
  completed: JobState;
  /** The server accepted the connection (WebSocket: its `authenticated` message). */
  authenticated: Principal;
  transport: TransportChange;
  state: StateChange;
  error: JobwireError;
}

export declare class JobwireClient {
  constructor(options?: ConnectOptions);
  readonly state: ConnectionState;
  readonly transport: TransportName | null;
  /** True when the connection is shared with other tabs (the SharedWorker's or a leader tab's). */
  readonly shared: boolean;
  /** True while this tab is the leader that holds the connection for the others (sharing
   *  without SharedWorker); false otherwise. */
  readonly leading: boolean;
  /** From the token's claims (unverified) until the server's `authenticated` replaces it; in
   *  cookie mode null until then (SSE, long-polling and polling do not send it). */
  readonly principal: Principal | null;
  /** Current state of every job seen, by job id. */
  readonly jobs: Map<string, JobState>;
  /** Settles once the client has started (worker or in-page connection). */
  readonly ready: Promise<void>;
  on<K extends keyof JobwireEvents>(type: K, listener: (detail: JobwireEvents[K]) => void): () => void;
  off<K extends keyof JobwireEvents>(type: K, listener: (detail: JobwireEvents[K]) => void): void;
  /** Follow "all" jobs or these job ids (replaces the current choice; resumes from the cursor). */
  subscribe(target: "all" | string[]): void;
  close(): void;
}

export declare function connect(options?: ConnectOptions): JobwireClient;

/** Full-jitter exponential backoff: uniform in [0, min(capMs, baseMs * factor ** attempt)).
 *  Pure; `random` defaults to Math.random. */
export declare function backoffDelay(attempt: number, options?: BackoffOptions,
                                     random?: () => number): number;

export declare class Backoff {
  constructor(options?: BackoffOptions, random?: () => number);
  attempt: number;
  /** The delay before the next attempt; counts a failure. */
  next(): number;
  /** After a success: start over from the first delay. */
  reset(): void;
}

/** Order two event ids: -1, 0 or 1 (null first). */
export declare function compareIds(a: string | null, b: string | null): -1 | 0 | 1;

/** The server's base URL: `url` (resolved against `origin`) if given; else `scriptUrl` less a
 *  trailing `/static/jobwire.js` or `.mjs`; else `origin`. No trailing slash. Pure. */
export declare function resolveBase(url: string | null | undefined,
                                    scriptUrl: string | null | undefined,
                                    origin: string): string;

/** The key of a shared connection (SharedWorker name, leader lock and channel): the server's
 *  base URL, the user and the role, so that two users of one browser never share. Pure. */
export declare function sharedName(base: string,
                                   principal: { userId: string | null; role: string }): string;

/** Where a new leader tab resumes: the oldest of the cursors the tabs report (null, "0-0"
 *  and non-ids ignored); null if none. Resuming early costs only repeats, which each tab
 *  drops; resuming late could lose what a tab had not yet received. Pure. */
export declare function resumeCursor(ids: Iterable<unknown> | null | undefined): string | null;

/** A JWT's claims, not verified; null if it is not a JWT. */
export declare function decodeToken(token: string): Record<string, unknown> | null;

export declare class JobStore {
  jobs: Map<string, JobState>;
  cursor: string | null;
  apply(event: Record<string, unknown>): JobState | null;
  advance(id: string | null): void;
  get(jobId: string): JobState | undefined;
  list(): JobState[];
}

export declare const TRANSPORTS: readonly TransportName[];
export declare const DEFAULTS: Readonly<Required<Omit<ConnectOptions,
  "token" | "jobIds" | "url" | "shared" | "workerUrl">>>;
export declare const version: string;

declare const Jobwire: {
  version: string; TRANSPORTS: typeof TRANSPORTS; DEFAULTS: typeof DEFAULTS;
  connect: typeof connect; JobwireClient: typeof JobwireClient; JobStore: typeof JobStore;
  Backoff: typeof Backoff; backoffDelay: typeof backoffDelay; compareIds: typeof compareIds;
  decodeToken: typeof decodeToken; resolveBase: typeof resolveBase;
  sharedName: typeof sharedName; resumeCursor: typeof resumeCursor; scriptUrl: string | null;
};
export default Jobwire;

declare global {
  // Set by <script src="/static/jobwire.js">.
  // ./jobwire.js, not ./jobwire.mjs: the same types, and a CommonJS project (module node16)
  // may not import an ES module from a declaration.
  var Jobwire: typeof import("./jobwire.js").default;
}
