"""Serving the Bolt app: HTTP at `/slack/events` (Starlette under uvicorn) or Socket Mode.

Bolt's dispatch is synchronous and waits up to three seconds for a listener's ack, so the
ASGI endpoint runs it in Starlette's thread pool instead of on the event loop: one slow ack
never holds up another request. `BotServer` runs the same ASGI app in a background thread on
127.0.0.1 for tests and `vdr console`.
"""

from __future__ import annotations

import logging
import threading
import time

import uvicorn
from slack_bolt import App
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

log = logging.getLogger("vdr.bot.server")

EVENTS_PATH = "/slack/events"
"""Request URL path for slash commands, interactivity and events alike."""


def asgi_app(app: App) -> Starlette:
    """An ASGI application serving `app` at `/slack/events`, plus `/healthz`."""

    async def events(request: Request) -> Response:
        body = await request.body()
        bolt_response = await run_in_threadpool(app.dispatch, to_bolt_request(request, body))
        return to_starlette_response(bolt_response)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(routes=[
        Route(EVENTS_PATH, events, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ])


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
