"""Serving the Bolt app: HTTP at `/slack/events` (Starlette under uvicorn) or Socket Mode.

Bolt's dispatch is synchronous and waits up to three seconds for a listener's ack, so the
ASGI endpoint runs it in Starlette's thread pool instead of on the event loop: one slow ack
never holds up another request. `BotServer` runs the same ASGI app in a background thread on
127.0.0.1 for tests and `vdr console`.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Mapping

import uvicorn
from slack_bolt import App
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bot.app import SlackApp

log = logging.getLogger("vdr.bot.server")

EVENTS_PATH = "/slack/events"
"""Request URL path for slash commands, interactivity and events alike."""

MAX_AGE_S = 5 * 60
"""A signed request older (or newer) than this is refused, as Slack advises: no replays."""


def asgi_app(app: App) -> Starlette:
    """An ASGI application serving `app` at `/slack/events`, plus `/healthz`."""

    async def events(request: Request) -> Response:
        body = await request.body()
        if isinstance(app, SlackApp):
            refused = why_unsigned(app.signing_secret, request.headers, body)
            if refused is not None:
                log.warning("refused a request to %s: %s", EVENTS_PATH, refused)
                return PlainTextResponse("invalid request", status_code=401)
        bolt_response = await run_in_threadpool(app.dispatch, to_bolt_request(request, body))
        return to_starlette_response(bolt_response)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(routes=[
        Route(EVENTS_PATH, events, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ])


def why_unsigned(secret: str, headers: Mapping[str, str], body: bytes,
                 now: float | None = None) -> str | None:
    """Why this request is not one Slack signed with `secret` (None when it is).

    Checked before Bolt, which fails with a 500 on a timestamp that is not a number and logs
    the whole body of a request it refuses; the reason given here names no part of the body.
    """
    timestamp = headers.get("x-slack-request-timestamp", "")
    signature = headers.get("x-slack-signature", "")
    if not (timestamp.isascii() and timestamp.isdigit()):
        return "no valid X-Slack-Request-Timestamp"
    if abs((time.time() if now is None else now) - int(timestamp)) > MAX_AGE_S:
        return "X-Slack-Request-Timestamp is too old or in the future"
    expected = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    if not secret or expected is None or not hmac.compare_digest(expected, signature):
        return "the signature does not match"
    return None


def serve_http(app: App, host: str, port: int) -> None:
    """Serve `app` over HTTP until interrupted."""
    log.info("serving Slack requests at http://%s:%d%s", host, port, EVENTS_PATH)
    uvicorn.run(asgi_app(app), host=host, port=port, log_level="warning", access_log=False)


def serve_socket_mode(app: App, app_token: str) -> None:
    """Connect to Slack over Socket Mode (no public URL) until interrupted."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    log.info("connecting to Slack in Socket Mode")
    SocketModeHandler(app, app_token).start()


class BotServer:
    """The app served over HTTP on 127.0.0.1 from a background thread."""

    def __init__(self, app: App, port: int, host: str = "127.0.0.1") -> None:
        config = uvicorn.Config(asgi_app(app), host=host, port=port, log_level="warning",
                                access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="vdr-bot-http",
                                        daemon=True)
        self.url = f"http://{host}:{port}{EVENTS_PATH}"

    def start(self, timeout_s: float = 10.0) -> BotServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the bot's HTTP server did not start at {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> BotServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
