"""Run the proxy's app with uvicorn in a background thread (tests, the embedded demo)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from proxy._faults import FaultConfig, FaultState

log = logging.getLogger("vdr.proxy")

STARTUP_TIMEOUT_S = 15.0
"""How long `start()` waits for uvicorn to accept connections before giving up."""

HTTP_IMPL = "httptools"
"""uvicorn's HTTP parser: httptools parses in C, about 15% less proxy CPU per small file than
h11. Its request cycle holds the transport as h11's does, so faults still cut and drop."""

EVENT_LOOP = "uvloop"
"""uvicorn's event loop: uvloop's transports cost about 10% less CPU per request than
asyncio's."""


def uvicorn_options() -> dict[str, Any]:
    """What `ProxyServer` and `vdr proxy` both ask of uvicorn: no logging of its own (the app
    has its access log), no lifespan, no proxy headers, the fast parser and loop."""
    return {
        "log_config": None,
        "log_level": "warning",
        "access_log": False,
        "lifespan": "off",
        "http": HTTP_IMPL,
        "loop": EVENT_LOOP,
        "proxy_headers": False,
    }


class ProxyServerError(RuntimeError):
    """The background server did not start."""


class ProxyServer:
    """`with ProxyServer(app) as server:` serves `app` on 127.0.0.1 at `server.url`.

    The socket is bound before uvicorn starts, so `port=0` picks a free port and `url` is
    known at once. `faults` (when the app came from `build_app`) changes faults mid-run.
    """

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets that say TCP, and
        # without it every keep-alive answer waits ~40 ms for a delayed ACK.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(app, timeout_graceful_shutdown=2, **uvicorn_options())
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def faults(self) -> FaultState:
        state: FaultState = self.app.state.faults  # type: ignore[attr-defined]
        return state

    def set_faults(self, config: FaultConfig | None) -> None:
        """Switch faults (None: off) for the requests that follow."""
        self.faults.configure(config)

    def start(self) -> ProxyServer:
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"vdr-proxy-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ProxyServerError(f"proxy did not start on {self.url}")
            time.sleep(0.01)
        log.debug("proxy serving on %s", self.url)
        return self

    def stop(self, *, wait: bool = True) -> None:
        """Ask uvicorn to finish; with `wait`, block until it has (about 0.2 s). Without, the
        server winds down in its thread and closes its socket itself (tests save the wait)."""
        self._server.should_exit = True
        if not wait:
            return
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._socket.close()

    def __enter__(self) -> ProxyServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
