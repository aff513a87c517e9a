// Issue 13 (duties 9-16): the faults a real network and a real laptop throw at the manager. Each test
// here failed on the manager as it was before the fix it proves.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { RefreshError } from "../refresh-manager.js";
import { answers, makeWorld, settle } from "./fakes.mjs";

const LOCK = "starlette-refresh";

/** A refresh answer that never comes: it records the request's signal and ignores it. */
function hang(signals) {
  return (call) => {
    signals.push(call.init.signal);
    return new Promise(() => {});
  };
}

describe("a hung refresh (duty 9)", () => {
  it("is aborted after refreshTimeoutMs, releases the lock and is retried with backoff", async () => {
    const world = makeWorld();
    const signals = [];
    world.server.refreshQueue.push(hang(signals));
    const tab = world.openTab();
    let resolved = null;
    void tab.manager.start().then((value) => (resolved = value));
    await world.clock.advance(9_999);
    assert.equal(signals.length, 1);
    assert.ok(signals[0] instanceof AbortSignal, "the refresh fetch gets a signal");
    assert.equal(signals[0].aborted, false);
    assert.ok(world.locks.isHeld(LOCK));
    await world.clock.advance(1);
    assert.equal(signals[0].aborted, true, "the hung request is aborted");
    assert.equal(world.locks.isHeld(LOCK), false, "and no longer holds the cross-tab lock");
    assert.equal(tab.manager.state, "reconnecting");
    const [failure] = tab.of("error");
    assert.ok(failure.error instanceof RefreshError);
    assert.equal(failure.error.status, null);
    assert.equal(failure.retryInMs, 750);
    assert.ok(tab.messages().includes("Refresh failed (timed out after 10s); retrying in 0.8s"));
    await world.clock.advance(750);
    assert.equal(resolved, true, "the retry got a token");
    assert.equal(world.server.refreshCalls.length, 2);
    assert.equal(tab.manager.state, "logged-in");
  });

  it("abandons an answer whose body never ends, and honours refreshTimeoutMs", async () => {
    const world = makeWorld();
    world.server.refreshQueue.push(() => new Response(new ReadableStream({ start() {} }), { status: 200 }));
    const tab = world.openTab("tab", { refreshTimeoutMs: 3_000 });
    let resolved = null;
    void tab.manager.start().then((value) => (resolved = value));
    await world.clock.advance(2_999);
    assert.deepEqual(tab.of("error"), []);
    await world.clock.advance(1);
    assert.equal(tab.of("error").length, 1);
    await world.clock.advance(750);
    assert.equal(resolved, true);
  });

  it("lets the other tab take the lock once the hung request is abandoned, and both recover", async () => {
    const world = makeWorld();
    const a = world.openTab("a");
    const b = world.openTab("b");
    await a.manager.start();
    await b.manager.start();
    await settle();
    world.server.refreshQueue.push(hang([]));
    const first = a.manager.refresh();
    await settle();
    const second = b.manager.refresh();
    await world.clock.advance(10_000);
    assert.equal(await second, true, "b got the lock when a's request was abandoned");
    assert.equal(b.calls().length, 2, "its restore and this refresh");
    await settle();
    assert.equal(await first, true, "a took b's token over the channel");
    assert.equal(a.calls().length, 2, "and made no request of its own after the abandoned one");
    assert.equal(a.manager.accessToken, b.manager.accessToken);
  });
});
