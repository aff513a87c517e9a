#!/usr/bin/env node
// Issue 13's nine faults of the browser refresh manager, measured the same way before and after.
//
// Runs one scenario per item against two versions of static/refresh-manager.js, in one process, on
// fake time (static/tests/fakes.mjs: a fake clock, server, Web Locks, BroadcastChannel and storage;
// nothing sleeps), and prints a Markdown table: item, what is measured, before, after.
//
//   node bench/manager_faults.mjs                    # before: f8cf60f (the manager before issue 13)
//   node bench/manager_faults.mjs --before <git-rev> # after: the working tree's manager
//   node bench/manager_faults.mjs --after <git-rev>  # or another commit's
//
// Both versions run against the same fakes (the working tree's static/tests/fakes.mjs) with the same
// options: each copy is written to a temporary directory as <tmp>/<side>/static/refresh-manager.js
// beside a copy of fakes.mjs, which imports it. Options the old manager does not know (monotonic,
// origin, from makeWorld) are passed to both; the old one ignores them. Each scenario fires at most
// --cap fake timers (default 10,000): a runaway loop stops there and its counts read ">= N".

import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const REPO = dirname(dirname(fileURLToPath(import.meta.url)));
const MANAGER = "static/refresh-manager.js";
const FAKES = "static/tests/fakes.mjs";
const SECOND = 1_000;
const MINUTE = 60_000;
const HOUR = 3_600_000;

const USAGE = `usage: node bench/manager_faults.mjs [--before REV] [--after REV] [--cap N]

Issue 13's nine refresh-manager faults, each measured on fake time against two versions of
${MANAGER}, printed as a Markdown table (item, what is measured, before, after).

  --before REV  the "before" manager: ${MANAGER} at this git revision (default f8cf60f)
  --after REV   the "after" manager at this revision (default: the working tree's file)
  --cap N       fake timers one scenario may fire before it is cut short (default 10000)
  -h, --help    this text`;

// --- the two versions -------------------------------------------------------------------------

function source(rev) {
  if (rev === null) return { label: "working tree", text: readFileSync(join(REPO, MANAGER), "utf8") };
  const git = (...args) => execFileSync("git", args, { cwd: REPO, encoding: "utf8", maxBuffer: 1 << 26, stdio: ["ignore", "pipe", "pipe"] });
  try {
    return { label: git("rev-parse", "--short", rev).trim(), text: git("show", `${rev}:${MANAGER}`) };
  } catch (error) {
    console.error(`manager_faults: no ${MANAGER} at ${rev}: ${String(error.stderr ?? error.message).trim()}`);
    process.exit(2);
  }
}

/** Writes the manager beside a copy of the working tree's fakes and imports both. */
async function load(tmp, side, text) {
  const dir = join(tmp, side, "static");
  mkdirSync(join(dir, "tests"), { recursive: true });
  writeFileSync(join(dir, "package.json"), '{ "type": "module" }\n');
  writeFileSync(join(dir, "refresh-manager.js"), text);
  writeFileSync(join(dir, "tests", "fakes.mjs"), readFileSync(join(REPO, FAKES), "utf8"));
  const fakes = await import(pathToFileURL(join(dir, "tests", "fakes.mjs")).href);
  const module = await import(pathToFileURL(join(dir, "refresh-manager.js")).href);
  return { ...fakes, RefreshManager: module.RefreshManager };
}

// --- driving fake time, with a cap -------------------------------------------------------------

let CAP = 10_000;

/** A makeWorld() whose server stamps every request with the clocks, and which counts fired timers. */
function newWorld(lib, options) {
  const w = lib.makeWorld(options);
  const { clock } = w;
  w.server.calls.push = function (call) {
    call.mono = clock.mono;
    call.wall = clock.time;
    return Array.prototype.push.call(this, call);
  };
  w.fired = 0;
  w.capped = false;
  w.lib = lib;
  return w;
}

/**
 * Moves fake time on by `ms`, firing due timers in order (as FakeClock.advance), and stops early once
 * `done()` holds or the scenario has fired CAP timers (then w.capped). Returns done().
 */
async function run(w, ms, done = () => false) {
  const { clock } = w;
  const target = clock.mono + ms;
  for (;;) {
    await w.lib.settle();
    if (done()) return true;
    if (w.fired >= CAP) {
      w.capped = true;
      return false;
    }
    let next = null;
    for (const [id, timer] of clock.timers) {
      if (timer.at <= target && (!next || timer.at < next.timer.at)) next = { id, timer };
    }
    if (!next) break;
    clock.timers.delete(next.id);
    to(clock, next.timer.at);
    w.fired++;
    next.timer.fn();
  }
  to(clock, target);
  await w.lib.settle();
  return done();
}

function to(clock, mono) {
  if (mono <= clock.mono) return;
  clock.time += mono - clock.mono;
  clock.mono = mono;
}

/** Runs fake time in small steps until `promise` settles (a chain that needs no timer gets its turns too). */
async function drive(w, promise, maxMs = MINUTE, step = 50) {
  const box = { settled: false };
  promise.then((value) => Object.assign(box, { settled: true, value }), (error) => Object.assign(box, { settled: true, error }));
  for (let t = 0; t < maxMs && !box.settled && !w.capped; t += step) await run(w, step, () => box.settled);
  if (box.error) throw box.error;
  return box;
}

/** Every refresh request from now on gets `answer(call)`. */
function always(w, answer) {
  w.server.refreshQueue = { shift: () => answer, push() {} };
}

const hang = () => new Promise(() => {}); // never answers, ignores its signal

/** A fake-server token's exp (s), or null for a token that is not one of its JWTs. */
function expOf(token) {
  try {
    return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString()).exp;
  } catch {
    return null;
  }
}

/** Whether the token is one the server issued and its exp is still ahead. */
function live(w, token) {
  const exp = token ? expOf(token) : null;
  return exp !== null && exp * 1000 > w.clock.now();
}

const stopAll = (w) => w.tabs.forEach((tab) => tab.manager.stop());
const s = (ms) => `${+(ms / 1000).toFixed(2)} s`;
const count = (w, n) => (w.capped ? `>= ${n}` : `${n}`);
const capNote = (w, start) => `cap of ${CAP} timers hit after ${s(w.clock.mono - start)} of fake time`;

/** The managers' construction error, as a cell, or null when it was built. */
function opened(w, name, options) {
  try {
    return { tab: w.openTab(name, options) };
  } catch (error) {
    return { refused: `constructor throws ${error.name}: ${error.message}` };
  }
}

// --- the nine scenarios --------------------------------------------------------------------------
// Each returns [what is measured, value] pairs; both versions produce the same rows.

const SCENARIOS = [
  {
    item: "1 hung refresh",
    async run(lib) {
      const rows = [];
      {
        // one tab; its first proactive refresh (810 s in) never answers; then 30 minutes pass
        const w = newWorld(lib);
        const tab = w.openTab("a");
        await drive(w, tab.manager.start());
        let hung = false;
        always(w, () => (hung ? w.server.issue() : ((hung = true), hang())));
        await run(w, 15 * MINUTE, () => hung);
        const issued = w.server.issued.length;
        await run(w, 30 * MINUTE);
        const token = tab.manager.accessToken;
        const exp = token ? expOf(token) : null;
        rows.push(["one tab, 30 min after its proactive refresh hung: refreshes that succeeded", count(w, w.server.issued.length - issued)]);
        rows.push(["... its state at the end; its token",
          `${tab.manager.state}; ${token === null ? "none" : live(w, token) ? "live" : `expired ${s(w.clock.now() - exp * 1000)} ago`}`]);
        stopAll(w);
      }
      {
        // two tabs; the first proactive refresh (whichever tab's it is) hangs; how long does the other
        // tab wait for a token each time it refreshes?
        const w = newWorld(lib);
        const tabs = [w.openTab("a"), w.openTab("b")];
        for (const tab of tabs) await drive(w, tab.manager.start());
        let hung = null;
        always(w, (call) => (hung === null ? ((hung = call.tab), hang()) : w.server.issue()));
        const waits = { a: [], b: [] };
        for (const tab of tabs) {
          let since = null;
          tab.manager.addEventListener("expiring", () => (since ??= w.clock.mono));
          tab.manager.addEventListener("refreshed", () => {
            if (since !== null) waits[tab.name].push(s(w.clock.mono - since));
            since = null;
          });
          tab.pendingWait = () => since;
        }
        await run(w, 15 * MINUTE, () => hung !== null);
        await run(w, 30 * MINUTE);
        const other = tabs.find((tab) => tab.name !== hung);
        const open = other.pendingWait();
        if (open !== null) waits[other.name].push(`still waiting after ${s(w.clock.mono - open)}`);
        rows.push(["two tabs, one's refresh hung: the other's wait for a token at each of its refreshes in 30 min",
          (w.capped ? ">= " : "") + (waits[other.name].join(", ") || "none")]);
        stopAll(w);
      }
      return rows;
    },
  },
  {
    item: "2 permanent error",
    async run(lib) {
      // every refresh answers 403 cross_site_request for one hour, from the first (the restore)
      const w = newWorld(lib);
      always(w, () => lib.answers.error(403, "cross_site_request"));
      const tab = w.openTab();
      let resolved = "no";
      tab.manager.start().then((value) => (resolved = `yes, ${value}, after ${s(w.clock.mono - start)}`));
      const start = w.clock.mono;
      await run(w, HOUR);
      const rows = [
        ["403 cross_site_request for 1 h: refresh requests", count(w, w.server.refreshCalls.length)],
        ["... state at the end", tab.manager.state],
        ["... start() resolved", resolved],
      ];
      stopAll(w);
      return rows;
    },
  },
  {
    item: "3 Retry-After",
    async run(lib) {
      // a logged-in tab's proactive refresh gets 503 Retry-After: 86400; the server is fine after it
      const w = newWorld(lib);
      const tab = w.openTab();
      await drive(w, tab.manager.start());
      const calls = () => w.server.refreshCalls;
      w.server.refreshQueue.push(() => lib.answers.error(503, "temporarily_unavailable", { "Retry-After": "86400" }));
      await run(w, 15 * MINUTE, () => calls().length >= 2);
      const at503 = calls()[1].mono;
      const expiry = calls()[0].mono + 900 * SECOND; // the token of the restore, 900 s
      await run(w, 2 * MINUTE, () => false);
      // a caller of fetch() 2 minutes after the 503 (30 s after the token ran out)
      let answered = null;
      const asked = w.clock.mono;
      void tab.manager.fetch("/api/me").then(() => (answered = w.clock.mono - asked));
      await run(w, 25 * HOUR, () => calls().length >= 3 && answered !== null);
      const next = calls()[2]?.mono;
      const rows = [
        ["503 with Retry-After: 86400: time until the next refresh request",
          next === undefined ? `${w.capped ? "(capped) " : ""}none within 25 h` : s(next - at503)],
        ["... the token runs out meanwhile: time on an expired token",
          next === undefined ? "> 25 h" : next > expiry ? `yes, ${s(next - expiry)}` : "no, 0 s"],
        ["... a fetch() 2 min after the 503 answers after", answered === null ? "not within 25 h" : s(answered)],
      ];
      stopAll(w);
      return rows;
    },
  },
  {
    item: "4 logout race",
    async run(lib) {
      // tab b's refresh finishes, then tab a logs out; both messages cross on the channel
      const w = newWorld(lib);
      const a = w.openTab("a");
      const b = w.openTab("b");
      await drive(w, a.manager.start());
      await drive(w, b.manager.start());
      const from = a.seen.length;
      w.bus.paused = true;
      await drive(w, b.manager.refresh());
      await drive(w, a.manager.logout());
      w.bus.resume();
      await run(w, 0);
      const states = a.seen.slice(from).filter((e) => e.type === "state").map((e) => e.detail.state);
      const holding = [a, b].filter((tab) => tab.manager.accessToken !== null).map((tab) => tab.name);
      const rows = [
        ["tab a's states after its logout", states.join(" -> ") || "(none)"],
        ["tabs holding a token at the end", holding.length ? holding.join(", ") : "none"],
      ];
      stopAll(w);
      return rows;
    },
  },
  {
    item: "5 login during refresh",
    async run(lib) {
      const rows = [];
      for (const [name, answer] of [["a token", (w) => w.server.issue()], ["401 invalid_grant", () => lib.answers.error(401, "invalid_grant")]]) {
        // a refresh is out; setSession() with a new login; then the refresh answers
        const w = newWorld(lib);
        const tab = w.openTab();
        await drive(w, tab.manager.start());
        const reply = lib.deferred();
        w.server.refreshQueue.push(() => reply.promise);
        const flight = tab.manager.refresh();
        await run(w, 0);
        tab.manager.setSession({ access_token: "new-login", expires_in: 900 });
        reply.resolve(answer(w));
        await drive(w, flight);
        const token = tab.manager.accessToken;
        const held = token === "new-login" ? "the login's" : token === null ? "none" : "the refresh's (old session)";
        rows.push([`refresh answers ${name} after setSession(): token held; state`, `${held}; ${tab.manager.state}`]);
        stopAll(w);
      }
      return rows;
    },
  },
  {
    item: "6 refresh floor",
    async run(lib) {
      // the API answers 401 invalid_token to every token; 20 fetch() calls, one after another
      const w = newWorld(lib);
      const tab = w.openTab();
      await drive(w, tab.manager.start());
      w.server.api = () => lib.answers.invalidToken();
      const before = w.server.refreshCalls.length;
      const started = w.clock.mono;
      const box = await drive(w, (async () => {
        for (let i = 0; i < 20; i++) await tab.manager.fetch("/api/me");
      })(), 10 * MINUTE, 10);
      const stamps = w.server.refreshCalls.slice(before).map((call) => call.mono);
      const most = Math.max(0, ...stamps.map((t) => stamps.filter((u) => u >= t && u < t + SECOND).length));
      const rows = [
        ["API rejects every token: refresh requests caused by 20 fetch() calls", count(w, stamps.length)],
        ["... most of them within any 1 s", count(w, most)],
        ["... fake time the 20 calls took", box.settled ? s(w.clock.mono - started) : "did not finish"],
      ];
      stopAll(w);
      return rows;
    },
  },
  {
    item: "7 clock jumps",
    async run(lib) {
      const rows = [];
      {
        // 400 s into a 900 s token the wall clock is set back an hour, then the tab gets focus
        const w = newWorld(lib);
        const tab = w.openTab();
        await drive(w, tab.manager.start());
        const got = w.server.refreshCalls[0].mono;
        await run(w, 400 * SECOND);
        w.clock.setWall(-HOUR);
        tab.events.dispatchEvent(new Event("focus"));
        await run(w, 0);
        const shown = tab.manager.expiresAt - w.clock.now(); // what a page shows as time left
        await run(w, 3 * HOUR, () => w.server.refreshCalls.length >= 2);
        const next = w.server.refreshCalls[1]?.mono;
        rows.push(["wall clock set back 1 h, 400 s into a 900 s token: next refresh, time since the token",
          next === undefined ? "none within 3 h" : s(next - got)]);
        rows.push(["... time on an expired token", next === undefined ? "> 3 h" : s(Math.max(0, next - got - 900 * SECOND))]);
        rows.push(["... time left by the manager's expiresAt - now() just after the jump (truly 500 s)", s(shown)]);
        stopAll(w);
      }
      {
        // the machine sleeps 2 h (the timers with it) and wakes without focus/online/pageshow events
        const w = newWorld(lib);
        const tab = w.openTab();
        await drive(w, tab.manager.start());
        w.clock.sleep(2 * HOUR);
        const woke = w.clock.mono;
        await run(w, 3 * HOUR, () => w.server.refreshCalls.length >= 2);
        const next = w.server.refreshCalls[1]?.mono;
        rows.push(["woke from a 2 h sleep with no event (token expired): time until the refresh",
          next === undefined ? "none within 3 h" : s(next - woke)]);
        stopAll(w);
      }
      return rows;
    },
  },
  {
    item: "8 option validation",
    async run(lib) {
      const rows = [];
      {
        const w = newWorld(lib);
        const { tab, refused } = opened(w, "tab", { marginMs: NaN });
        if (refused) rows.push(["marginMs: NaN: refresh requests in 1 fake s", refused]);
        else {
          void tab.manager.start();
          const start = w.clock.mono;
          await run(w, SECOND);
          const n = w.server.refreshCalls.length;
          rows.push(["marginMs: NaN: refresh requests in 1 fake s", w.capped ? `>= ${n} (${capNote(w, start)})` : `${n}`]);
          stopAll(w);
        }
      }
      {
        // an outage: every refresh answers 503, retried with backoff
        const w = newWorld(lib);
        always(w, () => lib.answers.plain(503));
        const { tab, refused } = opened(w, "tab", { backoff: { baseMs: NaN } });
        if (refused) rows.push(["backoff.baseMs: NaN, during a 503 outage: refresh requests in 1 fake s", refused]);
        else {
          void tab.manager.start();
          const start = w.clock.mono;
          await run(w, SECOND);
          const n = w.server.refreshCalls.length;
          rows.push(["backoff.baseMs: NaN, during a 503 outage: refresh requests in 1 fake s",
            w.capped ? `>= ${n} (${capNote(w, start)})` : `${n}`]);
          stopAll(w);
        }
      }
      {
        // every refresh answers expires_in 0.01
        const w = newWorld(lib);
        always(w, () => w.server.issue(0.01));
        const tab = w.openTab();
        void tab.manager.start();
        await run(w, 10 * SECOND);
        rows.push(["expires_in: 0.01: refresh requests in 10 s", count(w, w.server.refreshCalls.length)]);
        stopAll(w);
      }
      return rows;
    },
  },
  {
    item: "9 cross-origin fetch",
    async run(lib) {
      // logged in at http://app.test; a third party that answers 401 invalid_token to any request
      const w = newWorld(lib);
      const tab = w.openTab();
      await drive(w, tab.manager.start());
      w.server.api = () => lib.answers.invalidToken();
      const refreshes = w.server.refreshCalls.length;
      const token = tab.manager.accessToken;
      await drive(w, tab.manager.fetch("https://evil.example/api/steal"));
      const sent = w.server.apiCalls.map((call) => call.authorization);
      const carried = sent[0] === `Bearer ${token}` ? "yes, the access token" : sent[0] ? `yes: ${sent[0]}` : "no";
      const more = w.server.refreshCalls.length - refreshes;
      const replays = sent.slice(1);
      const replayed = replays.length === 0 ? "no replay"
        : `replayed ${replays.length}x ${replays.every((h) => h === `Bearer ${tab.manager.accessToken}`) ? "with the fresh token" : "without it"}`;
      const rows = [
        ["fetch(\"https://evil.example/...\"): carries Authorization", carried],
        ["... its 401 invalid_token triggers a refresh", more ? `yes, ${more}; ${replayed}` : `no; ${replayed}`],
      ];
      stopAll(w);
      return rows;
    },
  },
];

// --- the table ---------------------------------------------------------------------------------

async function measure(lib) {
  const results = [];
  for (const scenario of SCENARIOS) {
    try {
      results.push(await scenario.run(lib));
    } catch (error) {
      results.push([[null, `scenario failed: ${error?.stack?.split("\n").slice(0, 2).join(" ") ?? error}`]]);
    }
  }
  return results;
}

const cell = (text) => String(text).replaceAll("|", "\\|");

async function main() {
  const { values } = parseArgs({
    options: {
      before: { type: "string", default: "f8cf60f" },
      after: { type: "string" },
      cap: { type: "string", default: "10000" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return console.log(USAGE);
  CAP = Number(values.cap);
  if (!(Number.isInteger(CAP) && CAP > 0)) throw new Error(`--cap must be a positive integer, not ${values.cap}`);
  const before = source(values.before);
  const after = source(values.after ?? null);
  const tmp = mkdtempSync(join(tmpdir(), "manager-faults-"));
  const began = performance.now();
  try {
    const old = await measure(await load(tmp, "before", before.text));
    const now = await measure(await load(tmp, "after", after.text));
    console.log(`Issue 13, before (${MANAGER} at ${before.label}) and after (${after.label}), on fake time`);
    console.log(`with ${FAKES} from the working tree; at most ${CAP} fake timers per scenario (">= N": cut short).\n`);
    console.log("| item | what is measured | before | after |");
    console.log("| --- | --- | --- | --- |");
    SCENARIOS.forEach((scenario, i) => {
      const rows = Math.max(old[i].length, now[i].length);
      for (let r = 0; r < rows; r++) {
        const what = old[i][r]?.[0] ?? now[i][r]?.[0] ?? "";
        console.log(`| ${r === 0 ? scenario.item : ""} | ${cell(what)} | ${cell(old[i][r]?.[1] ?? "")} | ${cell(now[i][r]?.[1] ?? "")} |`);
      }
    });
    console.log(`\n(${((performance.now() - began) / 1000).toFixed(1)} s of real time)`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
