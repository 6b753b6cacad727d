"""Fault injection: the proxy misbehaving the way VDR platforms do under load.

A layer any backend sits behind, drawing from one seeded generator so a run can be repeated.
For each request (never for `/openapi.json`), after the configured latency, one draw decides
the answer: dropped connection (closed with no answer at all), 429 with `Retry-After`, 500 or
503, or the real answer. A real answer may then have its body cut: the headers promise
Content-Length bytes, fewer are sent, and the TCP connection is closed, so the client sees a
truncated body on the wire. Bodies are also paced to the configured bandwidth.

The probabilities are per request: `p_drop + p429 + p5xx` of requests never reach the backend;
`p_cut` applies to the answers that do.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy._http import CLOSE_CONNECTION, OPENAPI_PATH, error_response
from proxy.backends._common import parse_size

FAULTS_ENV = "VDR_FAULTS"
"""Environment variable holding faults as `p429=0.05,p5xx=0.05,cut=0.02,drop=0.01,...`."""

_DOCUMENTED_KEYS = ("p429", "p5xx", "cut", "drop", "latency_ms", "bandwidth", "seed",
                    "retry_after")
"""The keys README and .env.example use; `_ALIASES` also takes a few other spellings."""

_ALIASES = {
    "latency": "latency_ms",
    "latency_ms": "latency_ms",
    "bandwidth": "bandwidth",
    "p429": "p429",
    "429": "p429",
    "p5xx": "p5xx",
    "5xx": "p5xx",
    "cut": "p_cut",
    "p_cut": "p_cut",
    "drop": "p_drop",
    "p_drop": "p_drop",
    "seed": "seed",
    "fault_seed": "seed",
    "retry_after": "retry_after_s",
    "retry_after_s": "retry_after_s",
}


@dataclass(frozen=True)
class FaultConfig:
    """What goes wrong, how often. Probabilities are fractions of requests (0 to 1)."""

    latency_ms: float = 0.0
    bandwidth: int | None = None  # bytes per second per response body; None: unlimited
    p429: float = 0.0
    p5xx: float = 0.0
    p_cut: float = 0.0
    p_drop: float = 0.0
    seed: int = 0
    retry_after_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("p429", "p5xx", "p_cut", "p_drop"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"fault {name} must be between 0 and 1")
        if self.p429 + self.p5xx + self.p_drop > 1.0:
            raise ValueError("faults p429 + p5xx + drop must add up to 1 at most")
        if self.latency_ms < 0 or self.retry_after_s < 0:
            raise ValueError("fault latency_ms and retry_after must be 0 or more")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ValueError("fault bandwidth must be more than 0 bytes per second")

    @property
    def active(self) -> bool:
        return bool(
            self.latency_ms or self.bandwidth or self.p429 or self.p5xx or self.p_cut or self.p_drop
        )

    @classmethod
    def parse(cls, text: str, base: FaultConfig | None = None) -> FaultConfig:
        """Faults from `key=value,...` (keys: `_DOCUMENTED_KEYS`), on top of `base`."""
        values: dict[str, Any] = {}
        for pair in filter(None, (part.strip() for part in text.split(","))):
            key, sep, raw = pair.partition("=")
            name = _ALIASES.get(key.strip().lower())
            if name is None or not sep:
                known = ", ".join(_DOCUMENTED_KEYS)
                raise ValueError(f"unknown fault {pair!r}; use key=value with the keys {known}")
            values[name] = _convert(name, raw.strip())
        return replace(base or cls(), **values)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FaultConfig:
        """Faults from `VDR_FAULTS` (none when unset)."""
        environ = os.environ if environ is None else environ
        return cls.parse(environ.get(FAULTS_ENV, ""))

    def describe(self) -> str:
        changed = [
            f"{field.name}={getattr(self, field.name)}"
            for field in fields(self)
            if getattr(self, field.name) != field.default
        ]
        return ", ".join(changed) or "none"


def _convert(name: str, raw: str) -> Any:
    if name == "bandwidth":
        return parse_size(raw)
    if name == "seed":
        return int(raw)
    return float(raw)


@dataclass(frozen=True)
class _Draw:
    outcome: str | None  # "drop", "429", "500", "503" or None for a real answer
    cut_at: float | None  # fraction of the body to deliver before cutting, if cut


class FaultState:
    """The faults in force, their seeded generator, and counts of what was injected.

    Shared by every request of one app; `configure` swaps faults at run time (tests do)."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self.configure(config)

    def configure(self, config: FaultConfig | None) -> None:
        with self._lock:
            self.config = config or FaultConfig()
            self._rng = random.Random(self.config.seed)
            self.counts: Counter[str] = Counter()

    def draw(self) -> _Draw:
        """Four numbers per request, always, so a seed replays the same sequence."""
        with self._lock:
            config, rng = self.config, self._rng
            answer, which_5xx, cut, fraction = (rng.random() for _ in range(4))
            self.counts["requests"] += 1

        outcome = None
        if answer < config.p_drop:
            outcome = "drop"
        elif answer < config.p_drop + config.p429:
            outcome = "429"
        elif answer < config.p_drop + config.p429 + config.p5xx:
            outcome = "503" if which_5xx < 0.5 else "500"
        return _Draw(outcome, fraction if outcome is None and cut < config.p_cut else None)

    def count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1


class _ConnectionCut(Exception):
    """Raised into the app once its connection was cut, to stop producing the body."""


class FaultInjector:
    """ASGI middleware applying a `FaultState` to every request but the OpenAPI document."""

    def __init__(self, app: ASGIApp, state: FaultState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        config = self.state.config
        if scope["type"] != "http" or not config.active or scope["path"] == OPENAPI_PATH:
            await self.app(scope, receive, send)
            return

        draw = self.state.draw()
        if config.latency_ms:
            await asyncio.sleep(config.latency_ms / 1000)

        if draw.outcome == "drop":
            await self._drop(scope)
        elif draw.outcome is not None:
            await self._fail(scope, receive, send, int(draw.outcome), config)
        elif draw.cut_at is None and not config.bandwidth:
            await self.app(scope, receive, send)
        else:
            shaped = _ShapedSend(send, scope, self.state, config.bandwidth, draw.cut_at)
            try:
                await self.app(scope, receive, shaped)
            except _ConnectionCut:
                pass

    async def _drop(self, scope: Scope) -> None:
        scope["vdr.fault"] = "drop"
        self.state.count("drop")
        close = scope.get(CLOSE_CONNECTION)
        if close is None:  # not under uvicorn: let the server abort the exchange its own way
            raise ConnectionAbortedError("fault injection dropped the connection")
        await close()

    async def _fail(
        self, scope: Scope, receive: Receive, send: Send, status: int, config: FaultConfig
    ) -> None:
        scope["vdr.fault"] = str(status)
        self.state.count(str(status))
        code, message = {
            429: ("rate_limited", "too many requests (injected fault); retry after the delay"),
            500: ("internal", "internal error (injected fault); retry"),
            503: ("unavailable", "service unavailable (injected fault); retry after the delay"),
        }[status]
        retry_after = config.retry_after_s if status != 500 else None
        response = error_response(status, code, message, retry_after_s=retry_after)
        await response(scope, receive, send)


class _ShapedSend:
    """Wraps the server's `send`: paces body bytes to a bandwidth, or cuts the body short."""

    def __init__(
        self,
        send: Send,
        scope: Scope,
        state: FaultState,
        bandwidth: int | None,
        cut_fraction: float | None,
    ) -> None:
        self._send = send
        self._scope = scope
        self._state = state
        self._bandwidth = bandwidth
        self._cut_fraction = cut_fraction
        self._cut_at: int | None = None
        self._sent = 0
        self._started = 0.0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._started = asyncio.get_running_loop().time()
            length = _content_length(message)
            if self._cut_fraction is not None and length:
                self._cut_at = int(self._cut_fraction * length)  # always < length
            await self._send(message)
            return
        if message["type"] != "http.response.body":
            await self._send(message)
            return

        body = bytes(message.get("body", b""))
        if self._cut_at is not None and self._sent + len(body) > self._cut_at:
            await self._paced(body[: self._cut_at - self._sent], more_body=True)
            await self._cut()
        await self._paced(body, more_body=message.get("more_body", False))

    async def _paced(self, body: bytes, *, more_body: bool) -> None:
        if not self._bandwidth or not body:
            self._sent += len(body)
            await self._send({"type": "http.response.body", "body": body, "more_body": more_body})
            return

        step = max(1024, self._bandwidth // 20)
        loop = asyncio.get_running_loop()
        for offset in range(0, len(body), step):
            piece = body[offset : offset + step]
            due = (self._sent + len(piece)) / self._bandwidth - (loop.time() - self._started)
            if due > 0:  # wait until this piece may have arrived at the configured rate
                await asyncio.sleep(due)
            self._sent += len(piece)
            more = more_body or offset + step < len(body)
            await self._send({"type": "http.response.body", "body": piece, "more_body": more})

    async def _cut(self) -> None:
        self._scope["vdr.fault"] = f"cut@{self._cut_at}"
        self._state.count("cut")
        close = self._scope.get(CLOSE_CONNECTION)
        if close is not None:
            await close()
            raise _ConnectionCut()
        raise ConnectionAbortedError("fault injection cut the body")  # the server closes


def _content_length(message: Message) -> int | None:
    for name, value in message.get("headers", []):
        if name.lower() == b"content-length":
            return int(value)
    return None
