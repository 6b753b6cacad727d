"""`VdrClient`: the typed client of the canonical VDR API (v1).

One `httpx.Client` serves every thread (its connection pool is thread-safe). Every call goes
through `_call`, which retries as `RetryPolicy` says. All v1 calls are treated as idempotent and
so retried after any retryable failure, including the POST actions, because the API makes them
so: trashing a trashed room or restoring an active one succeeds and changes nothing more, and
purging twice cannot remove more than once. One visible trace remains: a purge repeated after
its first answer was lost may find the object already gone and raise NotFound, which callers
should read as "done". A call marked otherwise would be retried only when the server surely
did not act (refused connection, 429).
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from vdr_client._download import Download, DownloadSession, VersionPin
from vdr_client._errors import (
    AmbiguousRoom,
    BadRequest,
    DeadlineExceeded,
    IntegrityError,
    NotFound,
    TransportError,
)
from vdr_client._http import (
    failure_from_response,
    hide_query_strings_in_httpx_logs,
    httpx_errors,
    quote_id,
)
from vdr_client._models import Capabilities, Item, Operation, Page, Room
from vdr_client._redirects import resolve_host
from vdr_client._retry import FailedAttempt, Failure, RetryBudget, RetryEvent, RetryPolicy

if TYPE_CHECKING:
    from vdr_ops.settings import Settings

log = logging.getLogger("vdr.client")
hide_query_strings_in_httpx_logs()

M = TypeVar("M", bound=BaseModel)

USER_AGENT = "vdr-ops-client/1"
"""Sent with every request, so proxy logs tell our calls apart."""

OPERATION_POLL_S = (0.1, 0.2, 0.5, 1.0, 2.0)
"""Waits between polls of an operation; the last one repeats."""

AMBIGUOUS_SHOWN = 50
"""Most candidates an AmbiguousRoom error carries."""

_DONE_STATES = frozenset({"succeeded", "failed"})


class VdrClient:
    """Typed, retrying, thread-safe client of one VDR proxy.

    `max_connections` sizes the connection pool of the default transport; a `transport` given
    by the caller (an in-process ASGI transport, a MockTransport) brings its own. The token is
    sent to the proxy only, never to a storage host a download is redirected to.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
        max_connections: int = 64,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self._token = token
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._http = httpx.Client(
            base_url=self.base_url,
            transport=transport,
            verify=_shared_ssl_context(os.environ.get("SSL_CERT_FILE"),
                                       os.environ.get("SSL_CERT_DIR")),
            timeout=timeout_s,
            limits=limits,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )
        self._capabilities: Capabilities | None = None
        self._lock = threading.Lock()
        # Seams for tests: time and name resolution.
        self._clock: Callable[[], float] = time.monotonic
        self._sleep: Callable[[float], None] = time.sleep
        self._resolve = resolve_host

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **kw: Any) -> VdrClient:
        """A client for `VDR_API_URL`, sending `VDR_API_TOKEN` when it is set."""
        from vdr_ops.settings import get_settings

        settings = settings or get_settings()
        token = settings.vdr_api_token.get_secret_value() if settings.vdr_api_token else None
        return cls(settings.vdr_api_url, token, **kw)

    def __repr__(self) -> str:
        token = "<hidden>" if self._token else None
        return f"VdrClient(base_url={self.base_url!r}, token={token!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> VdrClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- discovery ---------------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        """What the backend behind the proxy can do; fetched once, then cached."""
        with self._lock:
            if self._capabilities is None:
                self._capabilities = self._get_model(Capabilities, "/v1/capabilities")
            return self._capabilities

    def search_rooms_page(
        self,
        *,
        query: str | None = None,
        status: str | None = None,
        owner: str | None = None,
        sort: str = "name",
        inactive_days: int | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Page[Room]:
        """One page of rooms matching the filters."""
        params = {
            "query": query,
            "status": status,
            "owner": owner,
            "sort": sort,
            "inactive_days": inactive_days,
            "cursor": cursor,
            "limit": limit,
        }
        return self._get_model(Page[Room], "/v1/rooms", params=params)

    def search_rooms(
        self,
        *,
        query: str | None = None,
        status: str | None = None,
        owner: str | None = None,
        sort: str = "name",
        inactive_days: int | None = None,
        limit: int | None = None,
    ) -> Iterator[Room]:
        """Every room matching the filters, page after page; `limit` is the page size."""
        size = limit or self.capabilities().max_page_size

        def fetch(cursor: str | None) -> Page[Room]:
            return self.search_rooms_page(
                query=query, status=status, owner=owner, sort=sort,
                inactive_days=inactive_days, cursor=cursor, limit=size,
            )

        yield from _follow(fetch)

    def get_room(self, room_id: str) -> Room:
        return self._get_model(Room, f"/v1/rooms/{quote_id(room_id)}")

    def find_room(self, ref: str) -> Room:
        """A room by id, else by exact name (case-insensitive), else by a unique part of a name."""
        ref = ref.strip()
        if not ref:
            raise BadRequest("a room reference must not be empty", code="bad_request")
        try:
            return self.get_room(ref)
        except (NotFound, BadRequest):
            pass
        return self._find_room_by_name(ref)

    def _find_room_by_name(self, ref: str) -> Room:
        wanted = ref.casefold()
        exact: list[Room] = []
        partial: list[Room] = []
        partial_count = 0
        for room in self.search_rooms(query=ref):
            name = room.name.casefold()
            if name == wanted:
                exact.append(room)
            elif wanted in name:
                partial_count += 1
                if len(partial) < AMBIGUOUS_SHOWN:
                    partial.append(room)
        if len(exact) == 1:
            return exact[0]
        if exact:
            raise AmbiguousRoom(ref, exact)
        if partial_count == 1:
            return partial[0]
        if partial_count:
            raise AmbiguousRoom(ref, partial, total=partial_count)
        raise NotFound(f"no room matches {ref!r} by id, name or part of a name", code="not_found")

    # -- trees and content -------------------------------------------------------------------

    def list_children(
        self, folder_id: str, *, cursor: str | None = None, limit: int | None = None
    ) -> Page[Item]:
        """One page of a folder's direct children."""
        path = f"/v1/folders/{quote_id(folder_id)}/children"
        return self._get_model(Page[Item], path, params={"cursor": cursor, "limit": limit})

    def iter_children(self, folder_id: str) -> Iterator[Item]:
        """Every direct child of a folder, page after page."""
        size = self.capabilities().max_page_size
        yield from _follow(lambda cursor: self.list_children(folder_id, cursor=cursor, limit=size))

    def download(
        self,
        file_id: str,
        write: Callable[[bytes], object],
        *,
        expected_size: int | None = None,
        offset: int = 0,
        length: int | None = None,
        pin: VersionPin | None = None,
    ) -> int:
        """Stream a file from `offset` into `write`, resuming after cuts; the bytes written.

        With `length`, only that many bytes from `offset` are fetched (one Range request per
        attempt, each answer checked against the exact span), so that parts of one file can be
        downloaded at once; `expected_size` stays the size of the whole file. Spans given the
        same `pin` must all come from one version of the file (VersionChanged otherwise).
        """
        _check_span(offset, length, expected_size)
        path = f"/v1/files/{quote_id(file_id)}/content"
        session = DownloadSession(
            http=self._http,
            auth_headers=self._auth_headers(),
            download_hosts=lambda: list(self.capabilities().download_hosts),
            resolve=self._resolve,
            budget=self._budget("GET", path),
        )
        written = Download(session, path, write, expected_size, offset, length, pin=pin).run()
        log.debug("downloaded %s: %d bytes from offset %d", file_id, written, offset)
        return written

    # -- deletion ----------------------------------------------------------------------------

    def trash_room(self, room_id: str) -> Operation:
        return self._post_action(f"/v1/rooms/{quote_id(room_id)}:trash")

    def restore_room(self, room_id: str) -> Operation:
        return self._post_action(f"/v1/rooms/{quote_id(room_id)}:restore")

    def purge_room(self, room_id: str, etag: str) -> Operation:
        """Purge a trashed room for good; `etag` must still be the room's current one."""
        path = f"/v1/rooms/{quote_id(room_id)}:purge"
        return self._post_action(path, headers={"If-Match": etag})

    def trash_item(self, item_id: str) -> Operation:
        return self._post_action(f"/v1/items/{quote_id(item_id)}:trash")

    def purge_item(self, item_id: str) -> Operation:
        return self._post_action(f"/v1/items/{quote_id(item_id)}:purge")

    def get_operation(self, op_id: str) -> Operation:
        return self._get_model(Operation, f"/v1/operations/{quote_id(op_id)}")

    def wait_operation(self, op_id: str, *, timeout_s: float = 600) -> Operation:
        """Poll an operation until it succeeded or failed; DeadlineExceeded after `timeout_s`."""
        started = self._clock()
        for poll in itertools.count():
            operation = self.get_operation(op_id)
            if operation.state in _DONE_STATES:
                return operation
            wait = OPERATION_POLL_S[min(poll, len(OPERATION_POLL_S) - 1)]
            if self._clock() - started + wait > timeout_s:
                raise DeadlineExceeded(
                    f"operation {op_id} still {operation.state} after {timeout_s:g} s"
                )
            self._sleep(wait)
        raise AssertionError("unreachable")

    # -- plumbing ----------------------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _budget(self, method: str, path: str, *, idempotent: bool = True) -> RetryBudget:
        return RetryBudget(
            self.retry,
            method=method,
            path=path,
            idempotent=idempotent,
            on_retry=self.on_retry,
            clock=self._clock,
            sleep=self._sleep,
        )

    def _get_model(self, model: type[M], path: str, *, params: dict[str, Any] | None = None) -> M:
        return self._call("GET", path, model, params=params)

    def _post_action(self, path: str, *, headers: dict[str, str] | None = None) -> Operation:
        return self._call("POST", path, Operation, headers=headers)

    def _call(
        self,
        method: str,
        path: str,
        model: type[M],
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> M:
        """One API call: send, read, parse, and retry as the policy allows."""
        budget = self._budget(method, path)
        clean = {key: value for key, value in (params or {}).items() if value is not None}
        while True:
            try:
                response = self._send(method, path, clean, headers or {}, budget.remaining_s())
                return _parse(model, response)
            except FailedAttempt as failed:
                budget.wait_after(failed.failure)

    def _send(
        self,
        method: str,
        path: str,
        params: dict[str, Any],
        headers: dict[str, str],
        remaining_s: float,
    ) -> httpx.Response:
        # No single attempt may outlast the call's deadline.
        timeout = self._http.timeout.as_dict()
        limited = httpx.Timeout(**{key: _cap(value, remaining_s) for key, value in timeout.items()})
        started = time.monotonic()
        with httpx_errors():
            request = self._http.build_request(
                method, path, params=params, headers={**self._auth_headers(), **headers},
                timeout=limited,
            )
            response = self._http.send(request, stream=True)
        try:
            with httpx_errors(in_body=True):
                response.read()
        finally:
            response.close()
        elapsed_ms = (time.monotonic() - started) * 1000
        log.debug("%s %s -> %d (%.0f ms)", method, path, response.status_code, elapsed_ms)
        if not response.is_success:
            raise FailedAttempt(failure_from_response(response))
        return response


def _check_span(offset: int, length: int | None, expected_size: int | None) -> None:
    if offset < 0:
        raise ValueError("offset must not be negative")
    if length is None:
        return
    if length < 0:
        raise ValueError("length must not be negative")
    if expected_size is not None and offset + length > expected_size:
        raise ValueError(f"bytes up to {offset + length} asked of a file of {expected_size}")


def _cap(seconds: float | None, remaining_s: float) -> float:
    limit = max(remaining_s, 0.001)
    return limit if seconds is None else min(seconds, limit)


def _parse(model: type[M], response: httpx.Response) -> M:
    """The answer as `model`; a truncated JSON body is retried, a wrong shape is not."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        where = f"{response.request.method} {response.request.url.path}"
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            error = TransportError(f"{where}: answer is not complete JSON")
            raise FailedAttempt(Failure(error, "cut body", retryable=True)) from exc
        raise IntegrityError(f"{where}: answer does not match the API: {exc}") from exc


P = TypeVar("P")


def _follow(fetch: Callable[[str | None], Page[P]]) -> Iterator[P]:
    """Every item of a cursor-paged list; a cursor seen twice would loop forever, so it raises."""
    cursor: str | None = None
    seen: set[str] = set()
    while True:
        page = fetch(cursor)
        yield from page.items
        if page.next_cursor is None:
            return
        if page.next_cursor in seen:
            raise IntegrityError(f"the server repeated cursor {page.next_cursor[:40]!r}")
        seen.add(page.next_cursor)
        cursor = page.next_cursor


@functools.lru_cache(maxsize=4)
def _shared_ssl_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """httpx's default context, built once per process and trust settings: loading the CA
    bundle takes about 25 ms, and every job step opens a client of its own. The arguments are
    the environment httpx reads, so a changed bundle still takes effect."""
    return httpx.create_ssl_context()
