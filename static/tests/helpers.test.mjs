// Pure helpers: margin, backoff, RefreshError, and the module's browser-free defaults.
import assert from "node:assert/strict";
import { describe, it, mock } from "node:test";

import { RefreshError, RefreshManager, backoffDelayMs, computeMarginMs } from "../refresh-manager.js";
import { answers, settle } from "./fakes.mjs";

describe("computeMarginMs", () => {
  it("is the larger of 60 s and a tenth of the lifetime", () => {
    assert.equal(computeMarginMs(900_000), 90_000);
    assert.equal(computeMarginMs(3_600_000), 360_000);
    assert.equal(computeMarginMs(300_000), 60_000);
    assert.equal(computeMarginMs(600_000), 60_000);
  });

  it("is capped at half the lifetime for very short tokens", () => {
    assert.equal(computeMarginMs(20_000), 10_000);
    assert.equal(computeMarginMs(100_000), 50_000);
    assert.equal(computeMarginMs(0), 0);
  });
});

describe("backoffDelayMs (equal jitter)", () => {
  const options = { baseMs: 1_000, maxMs: 30_000 };

  it("stays within [ceiling/2, ceiling] and never above maxMs", () => {
    for (let attempt = 0; attempt < 40; attempt++) {
      const ceiling = Math.min(30_000, 1_000 * 2 ** attempt);
      for (const r of [0, 0.25, 0.5, 0.999999, 1]) {
        const delay = backoffDelayMs(attempt, options, () => r);
        assert.ok(delay >= ceiling / 2 && delay <= ceiling, `attempt ${attempt}, random ${r}: ${delay}`);
        assert.ok(delay <= options.maxMs);
      }
      const sampled = backoffDelayMs(attempt, options);
      assert.ok(sampled >= ceiling / 2 && sampled <= ceiling);
    }
  });

  it("grows exponentially, then caps at maxMs", () => {
    const delays = Array.from({ length: 9 }, (_, attempt) => backoffDelayMs(attempt, options, () => 0.5));
    assert.deepEqual(delays, [750, 1_500, 3_000, 6_000, 12_000, 22_500, 22_500, 22_500, 22_500]);
    const top = Array.from({ length: 9 }, (_, attempt) => backoffDelayMs(attempt, options, () => 1));
    assert.deepEqual(top.slice(-4), [30_000, 30_000, 30_000, 30_000]);
  });

  it("defaults to 1 s base and 30 s cap, and survives odd input", () => {
    assert.equal(backoffDelayMs(0, undefined, () => 1), 1_000);
    assert.equal(backoffDelayMs(50, undefined, () => 1), 30_000);
    assert.equal(backoffDelayMs(5000, { baseMs: 1_000, maxMs: 30_000 }, () => 1), 30_000);
    assert.equal(backoffDelayMs(-3, options, () => 0), 500);
    assert.equal(backoffDelayMs(0, options, () => 7), 1_000);
  });
});

describe("RefreshError", () => {
  it("carries status, code and retryable", () => {
    const cause = new TypeError("fetch failed");
    const error = new RefreshError("refresh answered 503", { status: 503, code: "temporarily_unavailable", cause });
    assert.ok(error instanceof Error);
    assert.equal(error.name, "RefreshError");
    assert.equal(error.status, 503);
    assert.equal(error.code, "temporarily_unavailable");
    assert.equal(error.retryable, true);
    assert.equal(error.cause, cause);
    assert.equal(new RefreshError("x").status, null);
  });
});

describe("defaults in Node (no window, document, navigator or localStorage)", () => {
  it("builds without options and is logged out", () => {
    const manager = new RefreshManager();
    assert.equal(manager.state, "logged-out");
    assert.equal(manager.accessToken, null);
    assert.equal(manager.expiresAt, null);
    assert.equal(manager.refreshCount, 0);
    assert.equal(manager.lastRefreshAt, null);
    assert.ok(manager instanceof EventTarget);
  });

  it("resolves fetch, setTimeout and Date from globalThis at call time (mock.timers)", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_000_000 });
    const calls = [];
    const fetchMock = t.mock.method(globalThis, "fetch", async (url, init) => {
      calls.push({ url, init });
      return answers.token(`token-${calls.length}`, 900);
    });
    const lines = [];
    const manager = new RefreshManager({ channel: null, log: (level, message) => lines.push(message) });
    assert.equal(await manager.start(), true);
    assert.equal(manager.expiresAt, 1_000_000 + 900_000);
    t.mock.timers.tick(809_999);
    await settle();
    assert.equal(calls.length, 1);
    t.mock.timers.tick(1);
    await settle();
    assert.equal(calls.length, 2);
    assert.equal(manager.accessToken, "token-2");
    assert.equal(manager.expiresAt, 1_810_000 + 900_000);
    assert.ok(lines.includes("Token expiring in 90s, refreshing proactively..."));
    manager.stop();
    fetchMock.mock.restore();
    mock.timers.reset();
  });
});
