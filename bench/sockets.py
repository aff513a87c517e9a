"""WebSockets through the middleware: what it costs per message, per in-band renewal and per handshake.

One process, no network: the benchmark plays the ASGI server itself, calling the app with its own
``receive`` and ``send`` backed by asyncio queues, so what shows is the middleware's own cost and not a
server's or a socket's. The client sends a text frame and waits for its echo, one frame in flight
(ping-pong), over one open socket. No Redis: a socket needs none (the token is checked in process and
revocations come from the in-memory list), so ``TokenAuth`` points at a closed port and the middleware
class is driven directly, without the lifespan that would connect to the store.

Scenarios, each run ``--rounds`` times interleaved with the others so that drift on a noisy machine
hits all of them alike (the tables show medians, and ratios of medians from the same run):

- echo messages per second: the bare echo app (no middleware); the middleware with the token in
  ``Authorization`` (the app's receive goes straight to the server); the middleware with the token
  as a subprotocol, the marker selected (the app's receive also takes renewal frames out);
- in-band renewals per second on a socket that selected the marker, each
  ``starlette-refresh.renew <token>`` with a fresh token of the same session whose ``exp`` is later
  than the last (so every renewal verifies a token fully and moves the socket's end), next to the
  echo messages on the same path;
- handshakes per second (open, accept, client closes): the bare app; the middleware with the header
  and with the subprotocol, the same token each time (a repeat hits the verified-token cache, as a
  token already used for API requests does); the subprotocol with a fresh token each time (a full
  check per handshake).

The clock is a fixed one that is not a ``ManualClock``, so a socket's end is scheduled with real
timers, as in production. Renewal tokens are minted a second apart, so the benchmark's access
lifetime is a day (the default 900 s would not cover thousands of later ``exp``); the lifetime
changes nothing in the cost of a check. The event loop is uvloop when installed (as
``uvicorn --loop auto`` picks it), else asyncio's; ``--loop`` chooses.

Run: ``.venv/bin/python -m bench.sockets [--rounds N] [--messages M] [--loop auto|asyncio|uvloop]``
(or ``scripts/bench sockets``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bench import SECRET
from starlette_refresh import TokenAuth
from starlette_refresh.sockets import (
    RENEW_PREFIX,
    RENEWED_PREFIX,
    SOCKET_PROTOCOL,
    TOKEN_PROTOCOL_PREFIX,
)

START = 1_800_000_000.0
ACCESS_TTL = 86_400  # a day: room for one renewal token a second (see the module docstring)
SESSION_ID = "0" * 22
PAYLOAD = '{"type":"chat","room":"general","text":"hello, world"}'
UVLOOP = importlib.util.find_spec("uvloop") is not None


def quarter(messages: int) -> int:
    """Renewals and handshakes per round: a quarter of the echoed messages (each costs more)."""
    return max(1, messages // 4)


class FixedClock:
    """A clock that moves only when told to, and is not a ``ManualClock``: ``sleep_until`` then
    schedules a socket's end with asyncio timers, as it does on the system clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The app every scenario runs: accepts (choosing no subprotocol) and echoes every frame."""
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text")})


async def serve(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Runs the app for one connection, as the server's task for it does."""
    await app(scope, receive, send)


class Connection:
    """The server's side of one socket: ``receive`` and ``send`` as an ASGI server hands them to the
    app, each backed by a queue the client side reads or fills."""

    def __init__(self) -> None:
        self.inbound: asyncio.Queue[Message] = asyncio.Queue()
        self.outbound: asyncio.Queue[Message] = asyncio.Queue()

    async def receive(self) -> Message:
        return await self.inbound.get()

    async def send(self, message: Message) -> None:
        self.outbound.put_nowait(message)


@dataclass(frozen=True)
class Handshake:
    """How a client opens its socket: the headers and subprotocols it offers, and the subprotocol it
    expects the server to select."""

    headers: tuple[tuple[bytes, bytes], ...]
    subprotocols: tuple[str, ...]
    selected: str | None

    @classmethod
    def with_header(cls, token: str) -> Handshake:
        return cls(((b"authorization", b"Bearer " + token.encode()),), (), None)

    @classmethod
    def with_subprotocol(cls, token: str) -> Handshake:
        offered = (SOCKET_PROTOCOL, TOKEN_PROTOCOL_PREFIX + token)
        return cls(((b"sec-websocket-protocol", ", ".join(offered).encode()),), offered, SOCKET_PROTOCOL)

    def scope(self) -> Scope:
        """A fresh scope, as a server builds one per handshake (the middleware edits it)."""
        return {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "ws",
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
            "root_path": "",
            "path": "/ws",
            "raw_path": b"/ws",
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1:8000"), (b"upgrade", b"websocket"), *self.headers],
            "subprotocols": list(self.subprotocols),
            "extensions": {},
        }


class OpenSocket:
    """One socket the client has opened and the app has accepted."""

    def __init__(self, connection: Connection, task: asyncio.Task[None]) -> None:
        self.connection = connection
        self.task = task

    @classmethod
    async def open(cls, app: ASGIApp, handshake: Handshake) -> OpenSocket:
        connection = Connection()
        task = asyncio.get_running_loop().create_task(
            serve(app, handshake.scope(), connection.receive, connection.send)
        )
        connection.inbound.put_nowait({"type": "websocket.connect"})
        answer = await connection.outbound.get()
        if answer["type"] != "websocket.accept":
            # The answer's type and close code only: never anything that could carry the token.
            raise RuntimeError(f"the handshake was not accepted: {answer['type']} {answer.get('code')}")
        if answer.get("subprotocol") != handshake.selected:
            # Not the value: a wrong one could be the token's own subprotocol.
            raise RuntimeError(f"the accept did not select the subprotocol {handshake.selected!r}")
        return cls(connection, task)

    async def exchange(self, text: str) -> str:
        """Sends one text frame and returns the text of the frame that answers it."""
        self.connection.inbound.put_nowait({"type": "websocket.receive", "text": text})
        answer = await self.connection.outbound.get()
        reply = answer.get("text")
        if answer["type"] != "websocket.send" or not isinstance(reply, str):
            raise RuntimeError(f"unexpected answer to a frame: {answer['type']} {answer.get('code')}")
        return reply

    async def close(self) -> None:
        self.connection.inbound.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await self.task


@dataclass
class Scenario:
    """One measured loop and what each round measured (operations per second)."""

    name: str
    unit: str
    run: Callable[[], Awaitable[float]]
    rates: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


async def echo_rate(app: ASGIApp, handshake: Handshake, messages: int) -> float:
    """Echoed frames per second over one socket (open and close not timed)."""
    socket = await OpenSocket.open(app, handshake)
    gc.collect()
    started = time.perf_counter()
    for _ in range(messages):
        if await socket.exchange(PAYLOAD) != PAYLOAD:
            raise RuntimeError("the echo differs from the frame sent")
    elapsed = time.perf_counter() - started
    await socket.close()
    return messages / elapsed


async def renewal_rate(app: ASGIApp, handshake: Handshake, renewals: list[str], expires: list[int]) -> float:
    """In-band renewals per second over one socket that selected the marker, each answered by the
    middleware with the new ``exp`` (which also proves the frame never reached the echo app)."""
    socket = await OpenSocket.open(app, handshake)
    frames = [RENEW_PREFIX + token for token in renewals]
    answers = [f"{RENEWED_PREFIX}{exp}" for exp in expires]
    gc.collect()
    started = time.perf_counter()
    for frame, expected in zip(frames, answers, strict=True):
        if await socket.exchange(frame) != expected:
            raise RuntimeError("a renewal was not answered with its token's exp")
    elapsed = time.perf_counter() - started
    await socket.close()
    return len(frames) / elapsed


async def open_rate(app: ASGIApp, handshakes: list[Handshake]) -> float:
    """Sockets opened, accepted and closed by the client, per second, one after the other."""
    gc.collect()
    started = time.perf_counter()
    for handshake in handshakes:
        socket = await OpenSocket.open(app, handshake)
        await socket.close()
    return len(handshakes) / (time.perf_counter() - started)


def build_scenarios(messages: int, rounds: int) -> list[Scenario]:
    clock = FixedClock(START)
    auth = TokenAuth(secret_key=SECRET, redis_url="redis://127.0.0.1:1/0", clock=clock, access_ttl=ACCESS_TTL)
    entry = auth.middleware()
    middleware: ASGIApp = entry.cls(echo_app, *entry.args, **entry.kwargs)
    claims = {"email": "bench@example.com"}
    token = auth.access.issue("bench-user", SESSION_ID, claims).token
    opens = quarter(messages)
    # A new batch each round: a batch's tokens are in the verified-token cache once it has run.
    fresh = iter(
        [
            [
                Handshake.with_subprotocol(auth.access.issue("bench-user", SESSION_ID, claims).token)
                for _ in range(opens)
            ]
            for _ in range(rounds)
        ]
    )
    renewals, expires = [], []
    for _ in range(quarter(messages)):
        clock.now += 1  # exp is whole seconds: one a second keeps every renewal later than the last
        issued = auth.access.issue("bench-user", SESSION_ID, claims)
        renewals.append(issued.token)
        expires.append(int(issued.claims["exp"]))
    header, subprotocol = Handshake.with_header(token), Handshake.with_subprotocol(token)
    return [
        Scenario("bare echo app, no middleware", "msgs/s", lambda: echo_rate(echo_app, header, messages)),
        Scenario(
            "middleware, token in Authorization (direct)",
            "msgs/s",
            lambda: echo_rate(middleware, header, messages),
        ),
        Scenario(
            "middleware, token as subprotocol (marker)",
            "msgs/s",
            lambda: echo_rate(middleware, subprotocol, messages),
        ),
        Scenario(
            "in-band renewals, marker path",
            "renewals/s",
            lambda: renewal_rate(middleware, subprotocol, renewals, expires),
        ),
        Scenario("open-accept-close, bare app", "opens/s", lambda: open_rate(echo_app, [header] * opens)),
        Scenario(
            "open-accept-close, header, same token",
            "opens/s",
            lambda: open_rate(middleware, [header] * opens),
        ),
        Scenario(
            "open-accept-close, subprotocol, same token",
            "opens/s",
            lambda: open_rate(middleware, [subprotocol] * opens),
        ),
        Scenario(
            "open-accept-close, subprotocol, fresh token",
            "opens/s",
            lambda: open_rate(middleware, next(fresh)),
        ),
    ]


async def measure(scenarios: list[Scenario], rounds: int) -> None:
    for round_number in range(rounds):
        for scenario in scenarios:
            rate = await scenario.run()
            scenario.rates.append(rate)
            print(f"  round {round_number + 1}: {scenario.name}: {rate:,.0f} {scenario.unit}", flush=True)


def report(scenarios: list[Scenario], args: argparse.Namespace, loop: str) -> None:
    bare, direct, marker, renewal, open_bare, open_header, open_proto, open_fresh = scenarios
    print()
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), {platform.machine()}, "
        f"{loop} loop; in-process ASGI driver, one frame in flight; {args.messages:,} messages, "
        f"{quarter(args.messages):,} renewals and as many opens per round, "
        f"{args.rounds} rounds (medians)"
    )
    print(f"{'scenario':<46} {'rate':>10} {'':<10} {'µs each':>8}")
    for s in scenarios:
        print(f"{s.name:<46} {s.median:>10,.0f} {s.unit:<10} {1e6 / s.median:>8.1f}")
    print()
    ratios = [
        ("echo: direct / bare", direct, bare),
        ("echo: marker / bare", marker, bare),
        ("echo: marker / direct", marker, direct),
        ("opens: header / bare", open_header, open_bare),
        ("opens: subprotocol / bare", open_proto, open_bare),
        ("opens: subprotocol, fresh token / bare", open_fresh, open_bare),
    ]
    for label, top, bottom in ratios:
        print(f"{label:<46} {top.median / bottom.median:>7.1%} of the rate")
    per_renewal, per_message = 1e6 / renewal.median, 1e6 / marker.median
    print(
        f"{'one renewal / one echo, marker path':<46} {per_renewal / per_message:>7.1f} x the time "
        f"({per_renewal:.1f} µs vs {per_message:.1f} µs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs per scenario, interleaved")
    parser.add_argument(
        "--messages",
        type=int,
        default=20_000,
        help="echoed frames per round; renewals and opens are a quarter",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop: uvloop when installed (auto), or the one named",
    )
    args = parser.parse_args()
    loop = ("uvloop" if UVLOOP else "asyncio") if args.loop == "auto" else args.loop
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    scenarios = build_scenarios(args.messages, args.rounds)
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(measure(scenarios, args.rounds))
    report(scenarios, args, loop)


if __name__ == "__main__":
    main()
