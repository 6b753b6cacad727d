"""HTTP details shared by the app and the fault layer: the error shape, ranges, entity tags."""

from __future__ import annotations

import math
import re

from starlette.responses import Response

from vdr_client import ErrorBody, ErrorDetail

OPENAPI_PATH = "/openapi.json"
"""Served without a token and never faulted: clients and tools read it before anything else."""

CLOSE_CONNECTION = "vdr.close_connection"
"""Scope key of the coroutine that closes the client's connection (see `ProxyApp`)."""

DIGITS = re.compile(r"[0-9]{1,18}")
"""A whole number as a query parameter or range bound may spell it (no sign, no spaces)."""


# -- responses ----------------------------------------------------------------------------------


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    retry_after_s: float | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The one error shape; 429 and 503 always say when to come back."""
    headers = dict(headers or {})
    if status in (429, 503):
        retry_after_s = 1.0 if retry_after_s is None else retry_after_s
        headers["Retry-After"] = str(math.ceil(retry_after_s))
    body = ErrorBody(error=ErrorDetail(code=code, message=message, retry_after_s=retry_after_s))
    return Response(
        body.model_dump_json().encode(),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def etag_value(header: str) -> str:
    """An entity tag as sent in If-Match or If-Range, without W/ and quotes."""
    value = header.strip()
    value = value.removeprefix("W/")
    return value.strip('"')


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(start, end) inclusive for a single `bytes=` range, 'unsatisfiable', or None when the
    header is absent or not one we honour (several ranges, other units, bad syntax): RFC 9110
    lets a server ignore those and answer with the whole representation."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or (first and not DIGITS.fullmatch(first)) or (last and not DIGITS.fullmatch(last)):
        return None

    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - suffix), size - 1

    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size - 1)
