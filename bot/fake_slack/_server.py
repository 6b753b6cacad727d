"""The fake's HTTP face: `/api/<method>`, the upload URLs and the response URLs, on 127.0.0.1.

A real `slack_sdk.WebClient(base_url=f"{url}/api/")` and Bolt's `respond()` talk to it over
real sockets. Injected faults (429 + Retry-After, errors, delays) are applied here, before the
method runs, and every answer is recorded in the store.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from bot import blockkit
from bot.fake_slack._api import ApiFailure, WebApi
from bot.fake_slack._store import Message, Store

logger = logging.getLogger("vdr.bot.fake_slack")

RESPONSE_URL_USES = 5
"""Slack accepts five posts to one response_url ..."""

RESPONSE_URL_TTL_S = 30 * 60
"""... within thirty minutes of the interaction."""


class _Handler(BaseHTTPRequestHandler):
    server: FakeSlackHttpServer
    protocol_version = "HTTP/1.1"
    received_at = 0.0

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def _route(self) -> None:
        self.received_at = time.time()
        path = urlsplit(self.path).path
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        kind, _, rest = path.strip("/").partition("/")
        if kind == "api":
            self._api(rest, body)
        elif kind == "upload":
            status, text = self.server.api.receive_upload(rest, body)
            outcome = {"ok": status == 200, "error": None if status == 200 else text}
            self.server.store.record("(upload)", {"file_id": rest, "bytes": len(body)}, status,
                                     outcome, self.received_at)
            self._send(status, text.encode(), "text/plain")
        elif kind == "respond":
            self._respond(rest, body)
        else:
            self._send(404, b"not found", "text/plain")

    def _params(self, body: bytes) -> dict[str, Any]:
        params: dict[str, Any] = dict(parse_qsl(urlsplit(self.path).query))
        content_type = self.headers.get("Content-Type", "")
        if "json" in content_type and body:
            params.update(json.loads(body))
        elif body:
            params.update(parse_qsl(body.decode()))
        return params

    def _token(self, params: dict[str, Any]) -> str | None:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[len("Bearer "):]
        return params.pop("token", None)

    def _api(self, method: str, body: bytes) -> None:
        store, api = self.server.store, self.server.api
        try:
            params = self._params(body)
        except ValueError:
            self._answer(method, {}, 200, {"ok": False, "error": "invalid_json"})
            return
        token = self._token(params)
        fault = store.take_fault(method)
        if fault is not None and fault.delay_s:
            time.sleep(fault.delay_s)
        if fault is not None and fault.status == 429:
            headers = {"Retry-After": str(fault.retry_after_s or 1)}
            self._answer(method, params, 429, {"ok": False, "error": "ratelimited"}, headers)
            return
        if fault is not None and fault.error:
            self._answer(method, params, fault.status, {"ok": False, "error": fault.error})
            return
        handler = api.methods.get(method)
        if handler is None:
            self._answer(method, params, 404, {"ok": False, "error": "unknown_method"})
            return
        if token is None:
            self._answer(method, params, 200, {"ok": False, "error": "not_authed"})
            return
        if token != self.server.bot_token:
            self._answer(method, params, 200, {"ok": False, "error": "invalid_auth"})
            return
        try:
            answer = handler(params)
        except ApiFailure as failure:
            answer = {"ok": False, "error": failure.error}
            if failure.messages:
                answer["response_metadata"] = {"messages": failure.messages}
        self._answer(method, params, 200, answer)

    def _respond(self, token: str, body: bytes) -> None:
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            self._send(400, b"invalid_payload", "text/plain")
            return
        status, text = self.server.post_to_response_url(token, payload)
        outcome = {"ok": status == 200, "error": None if status == 200 else text}
        self.server.store.record("(response_url)", payload, status, outcome, self.received_at)
        self._send(status, text.encode(), "text/plain")

    def _answer(self, method: str, params: dict[str, Any], status: int, answer: dict[str, Any],
                headers: dict[str, str] | None = None) -> None:
        self.server.store.record(method, params, status, answer, self.received_at)
        self._send(status, json.dumps(answer).encode(), "application/json", headers)

    def _send(self, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class FakeSlackHttpServer(ThreadingHTTPServer):
    """A threading HTTP server carrying the fake workspace it answers for."""

    daemon_threads = True

    def __init__(self, store: Store, bot_token: str, host: str = "127.0.0.1", port: int = 0):
        super().__init__((host, port), _Handler)
        self.store = store
        self.bot_token = bot_token
        self.url = f"http://{host}:{self.server_address[1]}"
        self.api = WebApi(store, f"{self.url}/upload")
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,),
                                        name="fake-slack", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def post_to_response_url(self, token: str, payload: dict[str, Any]) -> tuple[int, str]:
        """What Slack does with a post to a response_url: (HTTP status, body text)."""
        store = self.store
        with store.lock:
            target = store.response_urls.get(token)
            if target is None:
                return 404, "no_such_url"
            if time.time() - target.issued_at > RESPONSE_URL_TTL_S:
                return 404, "expired_url"
            if target.uses >= RESPONSE_URL_USES:
                return 404, "used_url"
            target.uses += 1
            source = store.find_message(*target.source) if target.source else None
            if payload.get("delete_original"):
                if source is not None:
                    source.deleted = True
                return 200, "ok"
            text, blocks = payload.get("text") or "", payload.get("blocks") or []
            problems = blockkit.message_problems(text, blocks)
            if problems or not (text or blocks):
                return 400, "invalid_blocks" if problems else "no_text"
            if payload.get("replace_original") and source is not None:
                source.edits.append({"text": source.text, "blocks": source.blocks,
                                     "replaced_at": store.new_ts()})
                source.text, source.blocks = text, blocks
                return 200, "ok"
            in_channel = payload.get("response_type") == "in_channel"
            store.messages.append(Message(
                target.channel, store.new_ts(), store.bot_user_id, text, blocks,
                payload.get("thread_ts"), ephemeral_to=None if in_channel else target.user,
            ))
            return 200, "ok"
