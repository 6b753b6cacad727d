"""The ASGI app: the canonical VDR API (v1) served over one backend.

Layers, outermost first: the access log (one INFO line per request on `vdr.proxy`), fault
injection (off unless configured), bearer-token check (when a token is set), then the routes.
Every error leaves as the one JSON shape `{"error": {"code", "message", "retry_after_s"}}`.
Backends are synchronous; their calls run in Starlette's thread pool, but for the content of
in-memory backends, answered on the event loop (a thread hop costs more than making 4 KiB).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy._faults import FaultConfig, FaultInjector, FaultState
from proxy._http import (
    CLOSE_CONNECTION,
    DIGITS,
    OPENAPI_PATH,
    error_response,
    etag_value,
    parse_range,
)
from proxy._openapi import openapi_document
from proxy.backends._base import (
    Backend,
    BackendError,
    Content,
    InvalidRequest,
    RoomQuery,
    UnavailableError,
)

log = logging.getLogger("vdr.proxy")

DEFAULT_PAGE_SIZE = 100
"""Items per page when the request names no `limit` (never more than max_page_size)."""

SMALL_BODY_MAX = 256 * 1024
"""File bodies up to this many bytes are read whole and sent as one message; larger ones
stream in the backend's chunks (one thread hop per chunk, memory bounded by the chunk)."""


class _IdConvertor(Convertor[str]):
    """Path ids: anything but '/' and ':' (the colon starts an action such as `:trash`)."""

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("vdrid", _IdConvertor())


# -- responses ---------------------------------------------------------------------------------


def _json(model: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        model.model_dump_json().encode(),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def _operation_response(operation: Any) -> Response:
    return _json(operation, 202, {"Location": f"/v1/operations/{operation.id}"})


# -- parameters ---------------------------------------------------------------------------------


def _int_param(request: Request, name: str, *, minimum: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not DIGITS.fullmatch(raw) or int(raw) < minimum:
        raise InvalidRequest(f"{name} must be a whole number of at least {minimum}")
    return int(raw)


def _cursor_param(request: Request) -> str | None:
    cursor = request.query_params.get("cursor")
    if cursor is not None and not cursor:
        raise InvalidRequest("cursor must not be empty; leave it out for the first page")
    return cursor


def _text_param(request: Request, name: str) -> str | None:
    return request.query_params.get(name) or None


def _enum_param(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is not None and not value:
        raise InvalidRequest(f"{name} must not be empty; leave it out to mean any")
    return value


def _close_chunks(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def _read_whole(content: Content) -> bytes:
    """A small body in one piece; a backend that yields fewer or more bytes than it announced
    (a file changed while read) gets an error answer here rather than a broken body later."""
    try:
        body = b"".join(content.chunks)
    finally:
        _close_chunks(content.chunks)
    if len(body) != content.length:
        raise UnavailableError("the file changed while it was read; retry")
    return body


def _content_response(content: Content, status: int, *, head: bool) -> Response:
    """File bytes: small bodies whole (one message, no thread hop per chunk), large ones
    streamed chunk by chunk so memory stays bounded whatever the file's size."""
    headers = {
        "Content-Length": str(content.length),
        "Accept-Ranges": "bytes",
        "ETag": f'"{content.etag}"',
    }
    if status == 206:
        headers["Content-Range"] = f"bytes {content.start}-{content.end}/{content.total_size}"
    if head:
        _close_chunks(content.chunks)
        return Response(status_code=status, headers=headers, media_type=content.media_type)
    if content.length <= SMALL_BODY_MAX:
        body = _read_whole(content)
        return Response(body, status_code=status, headers=headers, media_type=content.media_type)
    return StreamingResponse(
        content.chunks, status_code=status, headers=headers, media_type=content.media_type
    )


# -- the routes ---------------------------------------------------------------------------------

Handler = Callable[[Request], Awaitable[Response]]


def _endpoint(handler: Handler) -> Handler:
    """Turn backend errors into the error shape, and anything unexpected into a logged 500."""

    async def handle(request: Request) -> Response:
        try:
            return await handler(request)
        except BackendError as exc:
            return error_response(
                exc.status, exc.code, exc.message, retry_after_s=exc.retry_after_s
            )
        except Exception:
            log.exception("unexpected failure in %s %s", request.method, request.url.path)
            return error_response(500, "internal", "the proxy failed; its log says why")

    return handle


class _Api:
    """The canonical calls, each mapped onto the backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.max_page_size = backend.capabilities().max_page_size

    async def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        return await run_in_threadpool(method, *args)

    def _limit(self, request: Request) -> int:
        limit = _int_param(request, "limit", minimum=1)
        return min(limit or DEFAULT_PAGE_SIZE, self.max_page_size)

    async def capabilities(self, request: Request) -> Response:
        return _json(await self._call(self.backend.capabilities))

    async def search_rooms(self, request: Request) -> Response:
        query = RoomQuery(
            query=_text_param(request, "query"),
            status=_enum_param(request, "status"),
            owner=_text_param(request, "owner"),
            inactive_days=_int_param(request, "inactive_days", minimum=0),
            sort=_enum_param(request, "sort") or "name",
        )
        cursor, limit = _cursor_param(request), self._limit(request)
        return _json(await self._call(self.backend.search_rooms, query, cursor, limit))

    async def get_room(self, request: Request) -> Response:
        room = await self._call(self.backend.get_room, request.path_params["room_id"])
        return _json(room, headers={"ETag": f'"{room.etag}"'})

    async def list_children(self, request: Request) -> Response:
        cursor, limit = _cursor_param(request), self._limit(request)
        folder_id = request.path_params["folder_id"]
        return _json(await self._call(self.backend.list_children, folder_id, cursor, limit))

    async def file_content(self, request: Request) -> Response:
        args = (
            request.path_params["file_id"],
            request.headers.get("range"),
            request.headers.get("if-range"),
            request.method == "HEAD",
        )
        if self.backend.content_in_memory:  # a thread hop would cost more than the work
            return self._content(*args)
        # One thread hop does it all: open, pick the range, and read a small body whole.
        return await self._call(self._content, *args)

    def _content(
        self, file_id: str, range_header: str | None, if_range: str | None, head: bool
    ) -> Response:
        """The answer to a content request; in the thread pool unless content is in memory."""
        whole = self.backend.open_content(file_id, 0, None)
        if whole.redirect_url:
            return Response(status_code=302, headers={"Location": whole.redirect_url})

        wanted = parse_range(range_header, whole.total_size)
        if wanted is not None and if_range is not None and etag_value(if_range) != whole.etag:
            wanted = None  # the client's copy is of another version: send it all afresh
        if wanted is None:
            return _content_response(whole, 200, head=head)

        _close_chunks(whole.chunks)
        if wanted == "unsatisfiable":
            return error_response(
                416,
                "range_not_satisfiable",
                f"the file has {whole.total_size} bytes; ask for a range inside them",
                headers={"Content-Range": f"bytes */{whole.total_size}"},
            )
        assert isinstance(wanted, tuple)
        start, end = wanted
        return _content_response(self.backend.open_content(file_id, start, end), 206, head=head)

    async def trash_room(self, request: Request) -> Response:
        room_id = request.path_params["room_id"]
        return _operation_response(await self._call(self.backend.trash_room, room_id))

    async def restore_room(self, request: Request) -> Response:
        room_id = request.path_params["room_id"]
        return _operation_response(await self._call(self.backend.restore_room, room_id))

    async def purge_room(self, request: Request) -> Response:
        room_id = request.path_params["room_id"]
        if_match = request.headers.get("if-match")
        etag = etag_value(if_match) if if_match is not None else None
        return _operation_response(await self._call(self.backend.purge_room, room_id, etag))

    async def trash_item(self, request: Request) -> Response:
        item_id = request.path_params["item_id"]
        return _operation_response(await self._call(self.backend.trash_item, item_id))

    async def purge_item(self, request: Request) -> Response:
        item_id = request.path_params["item_id"]
        return _operation_response(await self._call(self.backend.purge_item, item_id))

    async def get_operation(self, request: Request) -> Response:
        operation_id = request.path_params["operation_id"]
        return _json(await self._call(self.backend.get_operation, operation_id))

    def routes(self) -> list[Route]:
        get, post = ["GET"], ["POST"]
        table: list[tuple[str, Handler, list[str]]] = [
            ("/v1/capabilities", self.capabilities, get),
            ("/v1/rooms", self.search_rooms, get),
            ("/v1/rooms/{room_id:vdrid}", self.get_room, get),
            ("/v1/rooms/{room_id:vdrid}:trash", self.trash_room, post),
            ("/v1/rooms/{room_id:vdrid}:restore", self.restore_room, post),
            ("/v1/rooms/{room_id:vdrid}:purge", self.purge_room, post),
            ("/v1/folders/{folder_id:vdrid}/children", self.list_children, get),
            ("/v1/files/{file_id:vdrid}/content", self.file_content, get),
            ("/v1/items/{item_id:vdrid}:trash", self.trash_item, post),
            ("/v1/items/{item_id:vdrid}:purge", self.purge_item, post),
            ("/v1/operations/{operation_id:vdrid}", self.get_operation, get),
        ]
        return [
            Route(path, _endpoint(handler), methods=methods) for path, handler, methods in table
        ]


# -- middleware ---------------------------------------------------------------------------------


class BearerAuth:
    """Refuse every API call without `Authorization: Bearer <token>` (constant-time compare)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self._token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._token is None or scope["path"] == OPENAPI_PATH:
            await self.app(scope, receive, send)
            return

        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, presented = header.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(presented.strip(), self._token):
            await self.app(scope, receive, send)
            return

        response = error_response(
            401,
            "unauthorized",
            "a valid bearer token is required (the proxy's VDR_API_TOKEN)",
            headers={"WWW-Authenticate": 'Bearer realm="vdr"'},
        )
        await response(scope, receive, send)


class AccessLog:
    """One INFO line per request: method, path, status, bytes, time, and any fault injected.
    Headers are never logged, so neither is the token."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        seen: dict[str, int] = {"status": 0, "bytes": 0}

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                seen["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            query = scope.get("query_string", b"").decode("latin-1")
            target = scope["path"] + (f"?{query}" if query else "")
            fault = scope.get("vdr.fault")
            log.info(
                "%s %s %s %dB %.1fms%s",
                scope["method"],
                target,
                seen["status"] or "-",
                seen["bytes"],
                (time.perf_counter() - started) * 1000,
                f" fault={fault}" if fault else "",
            )


# -- the app ------------------------------------------------------------------------------------


def _connection_closer(send: Send) -> Callable[[], Awaitable[bool]] | None:
    """A coroutine function that really closes the client's TCP connection, if the server is
    uvicorn (its `send` is a bound method of the request cycle, which holds the transport)."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None or not hasattr(transport, "close"):
        return None

    async def close() -> bool:
        transport.close()
        for _ in range(500):  # let the server notice the loss, so it adds no answer of its own
            if getattr(cycle, "disconnected", True):
                break
            await asyncio.sleep(0.01)
        return True

    return close


class ProxyApp(Starlette):
    """Starlette, plus the hook fault injection needs to drop or cut a connection for real."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[CLOSE_CONNECTION] = _connection_closer(send)
        await super().__call__(scope, receive, send)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
    message = {
        404: "no such API path; see /openapi.json",
        405: "method not allowed on this path",
    }.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, code, message, headers=dict(exc.headers or {}))


def build_app(
    backend: Backend, *, token: str | None = None, faults: FaultConfig | None = None
) -> ProxyApp:
    """The proxy's ASGI app over `backend`; `app.state.faults` changes faults at run time."""
    api = _Api(backend)
    fault_state = FaultState(faults)
    document = json.dumps(openapi_document(secured=token is not None)).encode()

    async def openapi(request: Request) -> Response:
        return Response(document, media_type="application/json")

    routes = [*api.routes(), Route(OPENAPI_PATH, openapi, methods=["GET"])]
    app = ProxyApp(
        routes=routes,
        middleware=[
            Middleware(AccessLog),
            Middleware(FaultInjector, state=fault_state),
            Middleware(BearerAuth, token=token),
        ],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.faults = fault_state
    app.state.backend = backend
    return app
