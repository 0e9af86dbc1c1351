// jobwire.mjs: the ES-module face of jobwire.js. jobwire.js is a classic script (it must be, to
// also run as a <script> and as the SharedWorker), so it cannot `export`; importing it for its
// effect defines globalThis.Jobwire, re-exported here by name. No code is duplicated.
import "./jobwire.js";

const Jobwire = globalThis.Jobwire;
// An imported script has no document.currentScript: tell it where the worker script lives,
// which also tells it where the server is (this file's folder is `<base>/static/`).
if (!Jobwire.scriptUrl && typeof document !== "undefined") {
  Jobwire.scriptUrl = new URL("./jobwire.js", import.meta.url).href;
}

export const {
  version, TRANSPORTS, DEFAULTS, connect, JobwireClient, Engine, JobStore, Backoff,
  backoffDelay, compareIds, decodeToken, resolveBase, sharedName, resumeCursor,
} = Jobwire;
export default Jobwire;
