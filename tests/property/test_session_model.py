"""The session rules as a model: random sequences against the real SessionService.

A hypothesis state machine drives logins, refreshes (current, older, predecessor shortly after a
rotation, forged), clock steps (inside and past the grace window, past the idle lifetime, up to the
absolute lifetime), logout, logout-all, revoke (also of another subject's session) and listing. A
small pure-Python model of DESIGN.md "Rotation" and the scripts in ``lua.py`` predicts every answer;
after each step the implementation must agree with it:

- which refreshes succeed and which raise ``InvalidGrant``, and with which message ("already used",
  "session expired", "invalid or revoked");
- a grace answer carries exactly the refresh token of the first answer;
- the live sessions listed per subject (ids, created/last-used times, ``current``);
- what ``revoke`` and ``logout_all`` return.

Everything runs on fakeredis (Lua) and on a real ``redis-server`` this module starts on a free port,
with a ``ManualClock`` stepped in 5-second ticks. The service is async; each state machine owns one
event loop and drives it with ``run_until_complete``.

Where the implementation disagrees with the model, the failure names the step sequence (hypothesis
shrinks it) and says what the model expected and what the implementation did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import fakeredis
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from harness.processes import RedisServer
from starlette_refresh import InvalidGrant, InvalidToken, TokenAuth
from starlette_refresh.testing import ManualClock
from tests.apps import SECRET

if TYPE_CHECKING:
    from starlette_refresh.sessions import IssuedSession, SessionInfo, SessionService

ACCESS_TTL = 60
REFRESH_TTL = 600  # idle lifetime, sliding
ABSOLUTE_TTL = 1800
GRACE = 10
# The clock moves in steps of TICK seconds. Redis key TTLs (which only reclaim memory) are set to the
# remaining lifetime and run on Redis's real clock while the test clock is manual; with 5 s steps a
# key never gets a TTL under 5 s, far longer than an example runs, so real time never decides.
TICK = 5
SUBJECTS = ("alice", "bob", "carol")
START = 1_800_000_000  # seconds
LARGE_LIMIT = 100
SMALL_LIMIT = 2

Verdict = Literal["rotated", "grace", "reused", "expired", "revoked", "malformed"]


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class ModelSession:
    """One token family as the model sees it. Times are integer milliseconds, like the store's."""

    number: int
    sid: str
    subject: str
    gen: int
    rot: int  # time of the last rotation (or of the login)
    exp: int  # idle expiry: min(last rotation + refresh_ttl, abs)
    abs: int  # absolute expiry
    created: int
    last_used: int
    indexed: bool = True  # in its subject's index (the store's notion of "not revoked")
    tokens: list[str] = field(default_factory=list)  # tokens[g]: the token of generation g

    def __repr__(self) -> str:
        return f"S{self.number}({self.subject})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Keeps hypothesis' step listings short: ``Draw 1 (session): S2(alice)``."""
        printer.text(repr(self))


class SessionModel:
    """The rules of DESIGN.md "Rotation", in the shape of lua.py, without Redis."""

    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self.now = START * 1000
        self.sessions: list[ModelSession] = []

    def advance(self, seconds: int) -> None:
        self.now += seconds * 1000

    def of(self, subject: str) -> list[ModelSession]:
        return [s for s in self.sessions if s.subject == subject]

    def is_alive(self, s: ModelSession) -> bool:
        return s.indexed and self.now < s.exp and self.now < s.abs

    def alive(self, subject: str) -> list[ModelSession]:
        return [s for s in self.of(subject) if self.is_alive(s)]

    def login(self, subject: str, sid: str) -> tuple[ModelSession, list[ModelSession]]:
        """CREATE: prune idle-expired index entries, add the session, evict over the limit."""
        now = self.now
        absolute = now + ABSOLUTE_TTL * 1000
        for s in self.of(subject):
            if s.indexed and s.exp <= now:  # ZREMRANGEBYSCORE index -inf now
                s.indexed = False
        session = ModelSession(
            number=len(self.sessions) + 1,
            sid=sid,
            subject=subject,
            gen=0,
            rot=now,
            exp=min(now + REFRESH_TTL * 1000, absolute),
            abs=absolute,
            created=now,
            last_used=now,
        )
        # Over the limit, the other sessions go in ZPOPMIN order: lowest score (idle expiry) first,
        # then the lexicographically smallest member. The session being created is never the one
        # evicted: a login that answers 200 must leave a session that works.
        others = sorted((s for s in self.of(subject) if s.indexed), key=lambda s: (s.exp, s.sid))
        evicted = others[: max(0, len(others) + 1 - self.max_sessions)]
        for s in evicted:
            s.indexed = False
        self.sessions.append(session)
        return session, evicted

    def refresh(self, s: ModelSession, presented: int) -> Verdict:
        """ROTATE: missing/revoked, then expiry, then rotate / grace / reuse."""
        now = self.now
        if not s.indexed:
            return "revoked"
        if now >= s.exp or now >= s.abs:
            s.indexed = False
            return "expired"
        if presented >= s.gen:
            s.gen = presented + 1
            s.rot = now
            s.exp = min(now + REFRESH_TTL * 1000, s.abs)
            s.last_used = now
            return "rotated"
        if presented == s.gen - 1 and now - s.rot < GRACE * 1000:
            return "grace"  # answered from the stored state, which it leaves as it is
        s.indexed = False
        return "reused"

    def logout(self, s: ModelSession) -> None:
        s.indexed = False

    def logout_all(self, subject: str) -> int:
        """Ends every session of the subject; the answer is how many were alive."""
        count = len(self.alive(subject))
        for s in self.of(subject):
            s.indexed = False
        return count

    def revoke(self, subject: str, s: ModelSession) -> bool:
        """True only for a live session of ``subject`` (SessionService.revoke's contract)."""
        if s.subject != subject:
            return False
        was_alive = self.is_alive(s)
        s.indexed = False
        return was_alive


def classify(exc: InvalidGrant) -> Verdict:
    message = str(exc)
    if "already used" in message:
        return "reused"
    if "session expired" in message:
        return "expired"
    if "invalid or revoked" in message:
        return "revoked"
    if "invalid" in message:
        return "malformed"
    raise AssertionError(f"unexpected InvalidGrant message: {message!r}")


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------------
# The state machine
# --------------------------------------------------------------------------------------------------

ClientFactory = Callable[[], Any]
SUBJECT = st.sampled_from(SUBJECTS) | st.just(SUBJECTS[0])  # alice about two times in three
ORDER = st.integers(0, 9)


def ticks(low: int, high: int) -> st.SearchStrategy[int]:
    """Seconds from ``low`` to ``high``, in whole ticks."""
    return st.integers(low // TICK, high // TICK).map(lambda n: n * TICK)


PAUSE = st.sampled_from([0, 0, TICK, 4 * TICK])


class SessionMachine(RuleBasedStateMachine):
    """Drives one SessionService (on one event loop) and the model side by side."""

    def __init__(self, new_client: ClientFactory, max_sessions: int) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.client = new_client()
        self.clock = ManualClock(float(START))
        self.model = SessionModel(max_sessions)
        auth = TokenAuth(
            secret_key=SECRET,
            redis=self.client,
            clock=self.clock,
            access_ttl=ACCESS_TTL,
            refresh_ttl=REFRESH_TTL,
            absolute_ttl=ABSOLUTE_TTL,
            refresh_grace=GRACE,
            max_sessions_per_user=max_sessions,
        )
        self.auth = auth
        self.service: SessionService = auth.sessions
        # Session ids are random in production; here the login rule draws them, so that eviction
        # ties (broken by member order in ZPOPMIN) replay deterministically and shrink.
        self.next_session_id = ""
        self.service.refresh_codec.new_session_id = lambda: self.next_session_id  # type: ignore[method-assign]
        self.run(self.client.flushall())
        # The store alone (ping, scripts): the revocation feed's background task is not part of
        # these rules and would only add scheduling noise between steps. Refreshes still consult
        # the in-process revocation list.
        self.run(auth.store.start())

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        try:
            self.run(self.auth.shutdown())
            self.run(self.client.aclose())
        finally:
            self.loop.close()

    # -- helpers ------------------------------------------------------------------------------------

    def pick(self, data: st.DataObject, sessions: list[ModelSession] | None = None) -> ModelSession:
        """A session; live ones are drawn about half the time so that sequences stay interesting."""
        pool = sessions if sessions is not None else self.model.sessions
        live = [s for s in pool if self.model.is_alive(s)]
        choice = st.sampled_from(pool) if not live else st.sampled_from(live) | st.sampled_from(pool)
        return data.draw(choice, label="session")

    def rotated_sessions(self) -> list[ModelSession]:
        return [s for s in self.model.sessions if len(s.tokens) >= 2]

    def advance(self, seconds: int) -> None:
        assert seconds >= 0
        assert seconds % TICK == 0
        self.clock.advance(seconds)
        self.model.advance(seconds)
        assert int(self.clock() * 1000) == self.model.now

    def check_issued(self, issued: IssuedSession, s: ModelSession) -> None:
        assert issued.session_id == s.sid
        assert issued.subject == s.subject
        assert issued.refresh_expires_in == (s.exp - self.model.now) // 1000, (
            f"refresh_expires_in {issued.refresh_expires_in}, model {(s.exp - self.model.now) // 1000}"
        )
        refused: InvalidToken | None = None
        try:
            claims = self.service.access.verify(issued.access_token)
        except InvalidToken as exc:
            refused = exc
        assert (refused is None) == self.model.is_alive(s), (
            f"{s!r} at t+{self.elapsed()}s: the access token just issued is "
            f"{f'refused ({refused})' if refused else 'accepted'}; {self.describe_index(s.subject)}"
        )
        if refused is None:
            assert (claims["sub"], claims["sid"]) == (s.subject, s.sid)

    def describe_index(self, subject: str) -> str:
        """The model's view of a subject's sessions, for failure messages."""
        rows = [
            f"{s!r} sid={s.sid} idle expiry t+{s.exp // 1000 - START}s "
            f"{'alive' if self.model.is_alive(s) else 'indexed, expired' if s.indexed else 'ended'}"
            for s in self.model.of(subject)
        ]
        return f"model sessions of {subject!r}: " + "; ".join(rows)

    def present(self, s: ModelSession, generation: int) -> Verdict:
        """Refreshes with ``s``'s token of ``generation`` and checks the answer against the model."""
        token = s.tokens[generation]
        gen_before = s.gen
        capped = s.exp == s.abs
        expected = self.model.refresh(s, generation)
        event(f"refresh: {expected}")
        if expected == "expired":
            event("expired: absolute lifetime" if capped else "expired: idle lifetime")
        refusal: InvalidGrant | None = None
        try:
            issued = self.run(self.service.refresh(token))
        except InvalidGrant as exc:
            refusal = exc
        if refusal is not None:
            assert classify(refusal) == expected, (
                f"{s!r} presented gen {generation} (store gen {gen_before}) at t+{self.elapsed()}s: "
                f"model says {expected}, implementation refused with {str(refusal)!r}"
            )
            return expected
        assert expected in ("rotated", "grace"), (
            f"{s!r} presented gen {generation} (store gen {gen_before}) at t+{self.elapsed()}s: "
            f"model says {expected}, implementation answered a token of gen "
            f"{self.service.refresh_codec.parse(issued.refresh_token).generation}"
        )
        self.check_issued(issued, s)
        answered = self.service.refresh_codec.parse(issued.refresh_token)
        assert (answered.session_id, answered.generation) == (s.sid, s.gen), (
            f"{s!r}: answered gen {answered.generation}, model gen {s.gen} ({expected})"
        )
        if expected == "grace":
            assert issued.refresh_token == s.tokens[s.gen], (
                f"{s!r}: the grace answer is not the token of the first answer"
            )
        else:
            assert issued.refresh_token not in s.tokens
            assert len(s.tokens) == s.gen
            s.tokens.append(issued.refresh_token)
        return expected

    def elapsed(self) -> int:
        return self.model.now // 1000 - START

    # -- rules --------------------------------------------------------------------------------------

    @rule(subject=SUBJECT, order=ORDER, pause=PAUSE)
    def login(self, subject: str, order: int, pause: int) -> None:
        """``order`` leads the new session id, so hypothesis decides how idle-expiry ties break;
        ``pause`` seconds pass first (sessions logged in at the same instant tie)."""
        self.do_login(subject, order, pause)

    @rule(subject=SUBJECT, logins=st.lists(st.tuples(ORDER, PAUSE), min_size=2, max_size=4))
    def login_several_times(self, subject: str, logins: list[tuple[int, int]]) -> None:
        """Several devices in a row: the way to reach the session limit."""
        for order, pause in logins:
            self.do_login(subject, order, pause)

    def do_login(self, subject: str, order: int, pause: int) -> None:
        self.advance(pause)
        self.next_session_id = f"{order}n{len(self.model.sessions):03d}".ljust(22, "x")
        issued = self.run(self.service.login(subject))
        assert issued.session_id == self.next_session_id
        session, evicted = self.model.login(subject, issued.session_id)
        listed = {info.id for info in self.run(self.service.list_sessions(subject, ""))}
        assert (session.sid in listed) == self.model.is_alive(session), (
            f"login({subject!r}) at t+{self.elapsed()}s answered {session!r}, which is "
            f"{'listed' if session.sid in listed else 'not alive: the session limit evicted it at once'}"
            f" (max_sessions_per_user={self.model.max_sessions}); {self.describe_index(subject)}"
        )
        for e in evicted:
            if e is session:
                event("login evicted its own new session")
            elif e.exp == session.exp:
                event("login evicted a session tied with the new one")
            else:
                event("login evicted an older session")
        session.tokens.append(issued.refresh_token)
        assert self.service.refresh_codec.parse(issued.refresh_token).generation == 0
        self.check_issued(issued, session)

    @precondition(lambda self: self.model.sessions)
    @rule(data=st.data())
    def refresh_current(self, data: st.DataObject) -> None:
        s = self.pick(data)
        self.present(s, len(s.tokens) - 1)

    @precondition(lambda self: self.rotated_sessions())
    @rule(data=st.data())
    def refresh_old(self, data: st.DataObject) -> None:
        s = self.pick(data, self.rotated_sessions())
        generation = data.draw(st.integers(0, len(s.tokens) - 2), label="old generation")
        self.present(s, generation)

    @precondition(lambda self: self.model.sessions)
    @rule(data=st.data(), delay=st.sampled_from([0, GRACE - TICK, GRACE, GRACE + TICK, 6 * TICK]))
    def rotate_then_replay_predecessor(self, data: st.DataObject, delay: int) -> None:
        """Two tabs / a lost response: the current token rotates, then its predecessor comes again."""
        s = self.pick(data)
        self.present(s, len(s.tokens) - 1)
        self.advance(delay)
        if len(s.tokens) >= 2:
            self.present(s, len(s.tokens) - 2)

    @precondition(lambda self: self.model.sessions)
    @rule(data=st.data(), tamper=st.sampled_from(["mac", "generation"]))
    def refresh_forged(self, data: st.DataObject, tamper: str) -> None:
        s = self.pick(data)
        token = s.tokens[-1]
        if tamper == "mac":
            forged = token[:-1] + ("A" if token[-1] != "A" else "B")
        else:
            prefix, tag, sid, gen, mac = token.split(".")
            forged = ".".join([prefix, tag, sid, str(int(gen) + 1), mac])
        with pytest.raises(InvalidGrant) as caught:
            self.run(self.service.refresh(forged))
        assert classify(caught.value) == "malformed"

    @rule(
        seconds=st.one_of(
            st.just(GRACE - TICK),  # within grace
            st.sampled_from([GRACE, GRACE + TICK]),  # at and just past the end of the grace window
            ticks(GRACE + TICK, 300),  # past grace, within the idle lifetime (drawn twice as often)
            ticks(GRACE + TICK, 300),
            st.sampled_from([REFRESH_TTL - TICK, REFRESH_TTL, REFRESH_TTL + TICK]),  # the idle boundary
            ticks(REFRESH_TTL, 2 * REFRESH_TTL),  # past the idle lifetime
        )
    )
    def clock_step(self, seconds: int) -> None:
        self.advance(seconds)

    @precondition(lambda self: self.model.sessions)
    @rule(
        data=st.data(),
        stride=st.sampled_from([120, 300, REFRESH_TTL - TICK]),
        offset=st.sampled_from([-TICK, 0, TICK]),
    )
    def ride_to_absolute_lifetime(self, data: st.DataObject, stride: int, offset: int) -> None:
        """Keeps a session busy, a refresh every ``stride`` seconds, until its absolute lifetime
        (give or take ``offset`` seconds); the idle expiry alone would never get it there."""
        s = self.pick(data)
        target = s.abs + offset * 1000
        while self.model.now < target:
            self.advance(min(stride, (target - self.model.now) // 1000))
            if self.present(s, len(s.tokens) - 1) != "rotated":
                break

    @precondition(lambda self: self.model.sessions)
    @rule(
        data=st.data(),
        deadline=st.sampled_from(["exp", "abs"]),
        offset=st.sampled_from([-60, -TICK, 0, TICK]),
    )
    def clock_to_deadline(self, data: st.DataObject, deadline: str, offset: int) -> None:
        """Steps to just before, at or just after a session's idle or absolute expiry."""
        s = self.pick(data)
        target = getattr(s, deadline) + offset * 1000
        if target > self.model.now:
            self.advance((target - self.model.now) // 1000)

    @precondition(lambda self: self.model.sessions)
    @rule(data=st.data())
    def logout(self, data: st.DataObject) -> None:
        s = self.pick(data)
        token = data.draw(st.sampled_from(s.tokens), label="token")
        self.run(self.service.logout(token))
        self.model.logout(s)

    @rule(subject=st.sampled_from(SUBJECTS))
    def logout_all(self, subject: str) -> None:
        expected = self.model.logout_all(subject)
        actual = self.run(self.service.logout_all(subject))
        assert actual == expected, (
            f"logout_all({subject!r}) at t+{self.elapsed()}s: model {expected} live session(s), "
            f"implementation {actual}"
        )

    @precondition(lambda self: self.model.sessions)
    @rule(data=st.data(), subject=st.sampled_from(SUBJECTS))
    def revoke(self, data: st.DataObject, subject: str) -> None:
        s = self.pick(data)
        alive, indexed = self.model.is_alive(s), s.indexed
        expected = self.model.revoke(subject, s)
        event(f"revoke: {'own' if subject == s.subject else 'other'} session -> {expected}")
        actual = self.run(self.service.revoke(subject, s.sid))
        assert actual is expected, (
            f"revoke({subject!r}, {s!r}) at t+{self.elapsed()}s (alive={alive}, in index={indexed}, "
            f"idle expiry t+{s.exp // 1000 - START}s): model {expected}, implementation {actual}"
        )

    # -- invariants ---------------------------------------------------------------------------------

    @invariant()
    def listed_sessions_match(self) -> None:
        current = self.model.sessions[-1].sid if self.model.sessions else ""
        # A subject that never logged in cannot have sessions; skipping it keeps the runs short.
        subjects = [subject for subject in SUBJECTS if self.model.of(subject)]

        async def list_all() -> list[list[SessionInfo]]:
            return [await self.service.list_sessions(subject, current) for subject in subjects]

        for subject, listed in zip(subjects, self.run(list_all()), strict=True):
            expected = {s.sid: s for s in self.model.alive(subject)}
            assert {info.id for info in listed} == set(expected), (
                f"sessions of {subject!r} at t+{self.elapsed()}s: "
                f"model {sorted(map(repr, expected.values()))}, implementation lists "
                f"{sorted(repr(s) for s in self.model.sessions if s.sid in {i.id for i in listed})}"
            )
            for info in listed:
                s = expected[info.id]
                assert info.created_at == iso(s.created)
                assert info.last_used_at == iso(s.last_used), f"{s!r} last used"
                assert info.current is (info.id == current)
            assert [i.created_at for i in listed] == sorted(i.created_at for i in listed)


# --------------------------------------------------------------------------------------------------
# Backends and runs
# --------------------------------------------------------------------------------------------------

FAKE_SETTINGS = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# The full run (tests/run) checks the model on the real server only, with more examples than it used
# to; the fakeredis twin, marked quick_twin, is the --quick loop's (the same model on an emulator).
REAL_SETTINGS = settings(FAKE_SETTINGS, max_examples=100)
LIMITED_EXAMPLES = {"fakeredis": 50, "redis-server": 40}  # the max_sessions_per_user=2 runs

LIMITS = pytest.mark.parametrize(
    "max_sessions", [LARGE_LIMIT, SMALL_LIMIT], ids=["many-sessions", "two-sessions-per-user"]
)


@pytest.fixture(scope="module")
def real_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(Path(tmp_path_factory.mktemp("redis-model")), appendonly=False)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def run_machine(new_client: ClientFactory, max_sessions: int, base: settings, limited: int) -> None:
    chosen = base if max_sessions == LARGE_LIMIT else settings(base, max_examples=limited)
    run_state_machine_as_test(lambda: SessionMachine(new_client, max_sessions), settings=chosen)


@pytest.mark.quick_twin
@LIMITS
def test_session_model_on_fakeredis(max_sessions: int) -> None:
    def new_client() -> Any:
        return fakeredis.aioredis.FakeRedis(server=fakeredis.FakeServer())

    run_machine(new_client, max_sessions, FAKE_SETTINGS, LIMITED_EXAMPLES["fakeredis"])


@pytest.mark.integration
@LIMITS
def test_session_model_on_redis_server(real_redis_url: str, max_sessions: int) -> None:
    def new_client() -> Any:
        return aioredis.Redis.from_url(real_redis_url)

    run_machine(new_client, max_sessions, REAL_SETTINGS, LIMITED_EXAMPLES["redis-server"])
