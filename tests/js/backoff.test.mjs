// The reconnect schedule of jobwire.js: full-jitter exponential backoff, capped, reset on success.
import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay, Backoff, DEFAULTS } from "../../src/jobwire/static/jobwire.mjs";

const opts = { baseMs: 100, capMs: 5000, factor: 2 };
const ALMOST_ONE = 1 - Number.EPSILON;

test("the ceiling doubles from baseMs per attempt", () => {
  const ceilings = [0, 1, 2, 3, 4, 5].map((n) => backoffDelay(n, opts, () => ALMOST_ONE));
  assert.deepEqual(ceilings, [99, 199, 399, 799, 1599, 3199]);
});

test("full jitter: the whole range from 0 up to (not including) the ceiling", () => {
  for (let n = 0; n < 8; n++) {
    assert.equal(backoffDelay(n, opts, () => 0), 0);
    const ceiling = Math.min(opts.capMs, opts.baseMs * 2 ** n);
    assert.ok(backoffDelay(n, opts, () => ALMOST_ONE) < ceiling);
    assert.equal(backoffDelay(n, opts, () => 0.5), Math.floor(ceiling / 2));
  }
});

test("bounds hold for real randomness, and the delays are spread out", () => {
  const seen = new Set();
  for (let i = 0; i < 2000; i++) {
    const d = backoffDelay(4, opts);          // ceiling 1600
    assert.ok(Number.isInteger(d) && d >= 0 && d < 1600, `out of bounds: ${d}`);
    seen.add(Math.floor(d / 160));
  }
  assert.equal(seen.size, 10, "every tenth of the range is hit: jitter, not a fixed delay");
});

test("the cap holds for any attempt, without overflow", () => {
  for (const n of [6, 7, 10, 50, 1024, 1e6, Infinity]) {
    const d = backoffDelay(n, opts, () => ALMOST_ONE);
    assert.ok(d <= opts.capMs && d >= opts.capMs - 1, `attempt ${n}: ${d}`);
  }
});

test("nonsense attempts count as the first", () => {
  for (const n of [-3, NaN, undefined, null]) {
    assert.equal(backoffDelay(n, opts, () => ALMOST_ONE), 99);
  }
});

test("defaults: 500 ms base, 30 s cap", () => {
  assert.equal(DEFAULTS.backoff.baseMs, 500);
  assert.equal(backoffDelay(0, undefined, () => ALMOST_ONE), 499);
  assert.equal(backoffDelay(40, {}, () => ALMOST_ONE), 29999);
});

test("Backoff grows per failure and starts over after a success", () => {
  const b = new Backoff(opts, () => ALMOST_ONE);
  assert.deepEqual([b.next(), b.next(), b.next(), b.next()], [99, 199, 399, 799]);
  b.reset();
  assert.equal(b.attempt, 0);
  assert.deepEqual([b.next(), b.next()], [99, 199]);
  for (let i = 0; i < 20; i++) b.next();
  assert.equal(b.next(), 4999);              // capped, still
  b.reset();
  assert.equal(b.next(), 99);
});
