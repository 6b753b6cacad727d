"""The one boundary where httpx meets the client: its exceptions and error answers become
`Failure`s that carry the VdrError a caller will see.

Nothing outside this module catches an httpx exception, so callers only ever see the VdrError
tree, and the retry logic only ever sees Failures.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import httpx

from vdr_client._errors import ApiError, BadRequest, TransportError, error_for_status
from vdr_client._retry import FailedAttempt, Failure, parse_retry_after

_NEVER_RETRY_5XX = frozenset({501, 505})
"""Server errors that say "this server never does that": trying again cannot help."""


def quote_id(object_id: str) -> str:
    """An id as one path segment: slashes and dots encoded so no id can walk the URL tree."""
    if not object_id:
        raise BadRequest("an object id must not be empty", code="bad_request")
    return quote(object_id, safe="").replace(".", "%2E")


@contextmanager
def httpx_errors(*, in_body: bool = False) -> Iterator[None]:
    """Turn any httpx exception raised inside into a FailedAttempt."""
    try:
        yield
    except httpx.InvalidURL as exc:
        raise FailedAttempt(_broken(f"invalid URL: {exc}", exc)) from exc
    except httpx.HTTPError as exc:
        raise FailedAttempt(failure_from_exception(exc, in_body=in_body)) from exc


def failure_from_exception(exc: httpx.HTTPError, *, in_body: bool = False) -> Failure:
    """Classify an httpx exception: why it failed, and whether trying again may help."""
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return _transport("connect timeout", exc, reached_server=False)
    if isinstance(exc, httpx.ConnectError):
        reason = "connection refused" if "refused" in str(exc).lower() else "cannot connect"
        return _transport(reason, exc, reached_server=False)
    if isinstance(exc, httpx.TimeoutException):
        return _transport("timeout", exc)
    if in_body and isinstance(exc, httpx.TransportError | httpx.DecodingError):
        return _transport("cut body", exc)
    if isinstance(exc, httpx.RemoteProtocolError):
        return _transport("connection dropped", exc)
    if isinstance(exc, httpx.NetworkError):
        return _transport("connection reset", exc)
    if isinstance(exc, httpx.DecodingError):
        return _transport("cut body", exc)
    return _broken(f"{type(exc).__name__}: {exc}", exc)


def _transport(reason: str, exc: Exception, *, reached_server: bool = True) -> Failure:
    error = TransportError(f"{_where(exc)}{reason}: {exc}")
    error.__cause__ = exc
    return Failure(error, reason, retryable=True, reached_server=reached_server)


def _broken(message: str, exc: Exception) -> Failure:
    """A failure no retry can fix: a bad URL, an unsupported scheme, a misbehaving proxy."""
    error = TransportError(f"{_where(exc)}{message}")
    error.__cause__ = exc
    return Failure(error, "unusable request", retryable=False)


def _where(exc: Exception) -> str:
    request = getattr(exc, "_request", None)
    if isinstance(request, httpx.Request):
        return f"{request.method} {_safe_url(request.url)}: "
    return ""


def _safe_url(url: httpx.URL) -> str:
    """A URL fit for messages: no query string, which may hold a pre-signed credential."""
    return str(url.copy_with(query=None, fragment=None))


def failure_from_response(response: httpx.Response) -> Failure:
    """Classify an error answer; the body must already be read."""
    error = api_error(response)
    status = response.status_code
    retryable = status == 429 or (status >= 500 and status not in _NEVER_RETRY_5XX)
    return Failure(
        error,
        str(response.status_code),
        retryable=retryable,
        retry_after_s=error.retry_after_s,
        reached_server=response.status_code != 429,
    )


def api_error(response: httpx.Response) -> ApiError:
    """The ApiError for an error answer, from the canonical error body when there is one."""
    code, message, retry_after = _error_body(response)
    if retry_after is None:
        # The canonical body carries the exact wait; the header only whole seconds or a date.
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
    text = f"{response.request.method} {response.request.url.path}: {response.status_code} "
    return error_for_status(response.status_code)(
        text + message,
        code=code,
        status_code=response.status_code,
        retry_after_s=retry_after,
    )


def _error_body(response: httpx.Response) -> tuple[str, str, float | None]:
    try:
        detail = json.loads(response.content)["error"]
        retry_after = detail.get("retry_after_s")
        return (
            str(detail["code"]),
            str(detail["message"]),
            max(0.0, float(retry_after)) if retry_after is not None else None,
        )
    except (ValueError, KeyError, TypeError):
        snippet = response.content[:200].decode("utf-8", "replace").strip()
        return "http_error", snippet or response.reason_phrase, None


class _HideQueryStrings(logging.Filter):
    """httpx logs each request's full URL at INFO; a pre-signed URL's query is a credential."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _safe_url(arg) + "?<hidden>" if isinstance(arg, httpx.URL) and arg.query else arg
                for arg in record.args
            )
        return True


def hide_query_strings_in_httpx_logs() -> None:
    """Install the filter on httpx's logger, once."""
    logger = logging.getLogger("httpx")
    if not any(isinstance(existing, _HideQueryStrings) for existing in logger.filters):
        logger.addFilter(_HideQueryStrings())
