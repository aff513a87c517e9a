// Duties 4 and 8: one refresh at a time per tab and across tabs, the lock timeout, callbacks never
// run under the lock, and stop() leaving nothing behind.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { answers, deferred, makeWorld, settle } from "./fakes.mjs";

const LOCK = "starlette-refresh";

/** Makes the next refresh answer wait until the returned gate is opened. */
function slowRefresh(world) {
  const gate = deferred();
  world.server.refreshQueue.push(async () => {
    await gate.promise;
    return world.server.issue();
  });
  return gate;
}

describe("single flight in one tab", () => {
  it("N concurrent refresh() and fetch() calls make one network refresh", async () => {
    const world = makeWorld();
    const tab = world.openTab();
    await tab.manager.start();
    const gate = slowRefresh(world);
    const refreshes = Array.from({ length: 5 }, () => tab.manager.refresh());
    assert.ok(refreshes.every((promise) => promise === refreshes[0]), "one shared promise");
    const fetches = Array.from({ length: 3 }, (_, i) => tab.manager.fetch(`/api/items/${i}`));
    await settle();
    assert.equal(world.server.refreshCalls.length, 2);
    assert.equal(world.server.apiCalls.length, 0, "fetch waits for the running refresh");
    gate.resolve();
    assert.deepEqual(await Promise.all(refreshes), [true, true, true, true, true]);
    const responses = await Promise.all(fetches);
    assert.deepEqual(responses.map((r) => r.status), [200, 200, 200]);
    assert.equal(world.server.refreshCalls.length, 2);
    for (const call of world.server.apiCalls) assert.equal(call.authorization, `Bearer ${world.server.current}`);
    assert.equal(tab.of("refreshed").length, 2);
  });

  it("works without Web Locks or channels (in-tab single flight only)", async () => {
    const world = makeWorld({ locks: false, bus: false });
    const tab = world.openTab();
    const results = await Promise.all([tab.manager.start(), tab.manager.refresh(), tab.manager.refresh()]);
    assert.deepEqual(results, [true, true, true]);
    assert.equal(world.server.calls.length, 1);
  });
});

describe("single flight across tabs", () => {
  async function twoTabs() {
    const world = makeWorld();
    const a = world.openTab("a");
    const b = world.openTab("b");
    await a.manager.start();
    await world.clock.advance(1_000);
    await b.manager.start(); // b's token is newer: a adopts it
    await settle();
    assert.equal(a.manager.accessToken, b.manager.accessToken);
    return { world, a, b };
  }

  it("the other tab gets the token over the channel and does not call fetch", async () => {
    const { world, a, b } = await twoTabs();
    const bCallsBefore = b.calls().length;
    const gate = slowRefresh(world);
    const first = a.manager.refresh();
    await settle();
    const second = b.manager.refresh(); // while a holds the lock
    await settle();
    assert.ok(b.messages().includes("Waiting for another tab's refresh..."));
    gate.resolve();
    assert.equal(await first, true);
    assert.equal(await second, true);
    assert.equal(b.calls().length, bCallsBefore, "b made no network call");
    assert.equal(b.manager.accessToken, a.manager.accessToken);
    assert.equal(b.manager.expiresAt, a.manager.expiresAt);
    const last = b.of("refreshed").at(-1);
    assert.equal(last.source, "other-tab");
    assert.equal(last.accessToken, world.server.current);
    assert.ok(b.messages().includes("Another tab refreshed the token"));
    assert.equal(b.manager.state, "logged-in");
  });

  it("a login in another tab arrives as source \"login\" (maybe another user), a refresh as \"other-tab\"", async () => {
    const { world, a, b } = await twoTabs();
    await a.manager.refresh();
    await settle();
    b.manager.setSession({ access_token: "b-login", expires_in: 900 });
    await settle();
    assert.deepEqual(a.of("refreshed").slice(-2).map(({ source }) => source), ["network", "login"]);
    assert.deepEqual(b.of("refreshed").slice(-2).map(({ source }) => source), ["other-tab", "login"]);
    assert.equal(a.manager.accessToken, "b-login");
    assert.equal(world.server.refreshCalls.length, 3);
  });

  it("two tabs whose timers fire together make one network refresh", async () => {
    const { world, a, b } = await twoTabs();
    const gate = slowRefresh(world);
    await world.clock.advance(810_000);
    gate.resolve();
    await settle();
    assert.equal(world.server.refreshCalls.length, 3);
    assert.equal(a.manager.accessToken, b.manager.accessToken);
    assert.equal(a.manager.state, "logged-in");
    assert.equal(b.manager.state, "logged-in");
  });

  it("after getting the lock, waits for the token on the channel instead of refreshing again", async () => {
    const { world, a, b } = await twoTabs();
    const bCallsBefore = b.calls().length;
    const gate = slowRefresh(world);
    const first = a.manager.refresh();
    await settle();
    const second = b.manager.refresh();
    await settle();
    world.bus.paused = true; // a's message is late: b gets the lock first
    gate.resolve();
    assert.equal(await first, true);
    await settle();
    assert.ok(!world.locks.isHeld(LOCK) || b.calls().length === bCallsBefore);
    world.bus.resume();
    assert.equal(await second, true);
    assert.equal(b.calls().length, bCallsBefore);
    assert.equal(b.manager.accessToken, a.manager.accessToken);
  });

  it("tabs whose clocks disagree still share one refresh and anchor expiry to their own clock", async () => {
    const world = makeWorld();
    const a = world.openTab("a");
    // b's clock runs 5 s ahead of a's (as independent page clocks do in tests)
    const b = world.openTab("b", { now: () => world.clock.now() + 5_000 });
    await a.manager.start();
    await b.manager.start();
    await settle();
    const bCallsBefore = b.calls().length;
    const gate = slowRefresh(world);
    const first = a.manager.refresh();
    await settle();
    const second = b.manager.refresh();
    await settle();
    world.bus.paused = true; // a's message is late: b gets the lock first and must wait for it
    gate.resolve();
    assert.equal(await first, true);
    await settle();
    world.bus.resume();
    assert.equal(await second, true);
    assert.equal(b.calls().length, bCallsBefore, "b made no network call");
    assert.equal(b.manager.accessToken, a.manager.accessToken);
    assert.equal(b.manager.expiresAt - a.manager.expiresAt, 5_000, "the same remaining lifetime on b's clock");
  });

  it("refreshes itself when the handed-off token never arrives", async () => {
    const { world, a, b } = await twoTabs();
    const gate = slowRefresh(world);
    const first = a.manager.refresh();
    await settle();
    const second = b.manager.refresh();
    await settle();
    world.bus.paused = true; // the message is lost
    gate.resolve();
    await first;
    const bCallsBefore = b.calls().length;
    await world.clock.advance(999);
    assert.equal(b.calls().length, bCallsBefore);
    await world.clock.advance(1);
    assert.equal(await second, true);
    assert.equal(b.calls().length, bCallsBefore + 1);
  });

  it("refreshes anyway after lockTimeoutMs when another tab holds the lock forever", async () => {
    const world = makeWorld();
    world.locks.holdForever(LOCK);
    const tab = world.openTab();
    const started = tab.manager.start();
    await world.clock.advance(9_999);
    assert.equal(world.server.calls.length, 0);
    assert.ok(tab.messages().includes("Waiting for another tab's refresh..."));
    await world.clock.advance(1);
    assert.equal(await started, true);
    assert.equal(world.server.calls.length, 1);
    assert.ok(tab.messages().includes("Gave up waiting for another tab after 10s; refreshing anyway"));
    assert.equal(world.clock.pending, 1, "only the proactive timer is left");
  });

  it("falls back to no lock when the lock manager throws", async () => {
    const world = makeWorld();
    const tab = world.openTab("tab", { locks: { request: () => Promise.reject(new DOMException("denied", "SecurityError")) } });
    assert.equal(await tab.manager.start(), true);
    assert.equal(world.server.calls.length, 1);
    assert.ok(tab.messages().includes("Cross-tab lock unavailable (SecurityError); refreshing without it"));
  });
});

describe("callbacks and the lock", () => {
  it("never runs an event listener or the logger while holding the lock", async () => {
    const world = makeWorld();
    const heldDuring = [];
    const locks = world.locks.forTab();
    const a = world.openTab("a", { locks, log: (level, message) => heldDuring.push([message, locks.holding]) });
    const b = world.openTab("b");
    for (const type of ["refreshed", "state", "error", "expiring", "logged-out"]) {
      a.manager.addEventListener(type, () => heldDuring.push([type, locks.holding]));
    }
    await a.manager.start();
    world.server.refreshQueue.push(() => answers.error(503, "temporarily_unavailable", { "Retry-After": "1" }));
    const gate = slowRefresh(world);
    const running = a.manager.refresh();
    await settle();
    assert.equal(a.manager.state, "reconnecting");
    await world.clock.advance(1_000); // the retry now waits on the gate, holding the lock
    assert.ok(locks.holding);
    b.manager.setSession({ access_token: "b-login", expires_in: 900 }); // reaches a while a holds the lock
    await settle();
    const seenWhileHeld = heldDuring.length;
    gate.resolve();
    await running;
    await world.clock.advance(810_000);
    assert.ok(heldDuring.length > seenWhileHeld && heldDuring.length > 10);
    assert.ok(heldDuring.some(([what]) => what === "Another tab logged in"), "the deferred message ran later");
    assert.deepEqual(heldDuring.filter(([, held]) => held), []);
  });

  it("an event listener that calls refresh() does not deadlock", async () => {
    const world = makeWorld();
    const tab = world.openTab();
    let nested = null;
    tab.manager.addEventListener("refreshed", () => {
      nested ??= tab.manager.refresh();
    });
    assert.equal(await tab.manager.start(), true);
    assert.ok(nested, "the listener ran");
    assert.equal(await nested, true);
    assert.equal(world.server.calls.length, 2, "the nested call was a new refresh");
    assert.equal(tab.manager.state, "logged-in");
  });
});

describe("stop()", () => {
  it("clears every timer and listener and closes the channel", async () => {
    const world = makeWorld();
    const tab = world.openTab();
    await tab.manager.start();
    assert.ok(world.clock.pending > 0);
    assert.equal(tab.events.listeners, 3);
    assert.equal(tab.document.listeners, 1);
    const [channel] = world.bus.channels;
    assert.equal(channel.listeners, 1);
    tab.manager.stop();
    assert.equal(world.clock.pending, 0);
    assert.equal(tab.events.listeners, 0);
    assert.equal(tab.document.listeners, 0);
    assert.equal(channel.listeners, 0);
    assert.equal(channel.closed, true);
    await world.clock.advance(24 * 3_600_000);
    tab.events.dispatchEvent(new Event("focus"));
    await settle();
    assert.equal(world.server.calls.length, 1);
    assert.equal(await tab.manager.refresh(), false);
    assert.equal(world.server.calls.length, 1);
  });

  it("ends a retrying restore and a lock wait without leaving timers", async () => {
    const world = makeWorld();
    world.server.refreshQueue.push(() => answers.error(503, "temporarily_unavailable", { "Retry-After": "5" }));
    const retrying = world.openTab("retrying");
    const restore = retrying.manager.start();
    await settle();
    assert.equal(retrying.manager.state, "reconnecting");
    assert.equal(world.clock.pending, 1);
    retrying.manager.stop();
    assert.equal(await restore, false);
    assert.equal(world.clock.pending, 0);

    world.locks.holdForever(LOCK);
    const waiting = world.openTab("waiting");
    const restore2 = waiting.manager.start();
    await settle();
    assert.equal(world.clock.pending, 1, "the lock timeout");
    waiting.manager.stop();
    assert.equal(await restore2, false);
    assert.equal(world.clock.pending, 0);
    await world.clock.advance(60_000);
    assert.equal(world.server.calls.length, 1);
  });

  it("can start again after stop()", async () => {
    const world = makeWorld();
    const tab = world.openTab();
    await tab.manager.start();
    tab.manager.stop();
    assert.equal(await tab.manager.start(), true, "still fresh: no new refresh needed");
    assert.equal(world.server.calls.length, 1);
    assert.equal(tab.events.listeners, 3);
    await world.clock.advance(810_000);
    assert.equal(world.server.calls.length, 2);
    tab.manager.stop();
  });
});
