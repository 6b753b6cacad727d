"""The OpenAPI 3.1 document the proxy serves at `/openapi.json`.

Schemas come from the pydantic models in `vdr_client._models` (the same ones the client parses
with), so the document cannot drift from what the proxy sends. Paths, parameters and responses
are written out here, one table per call, next to the errors each call can answer with.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from vdr_client import (
    ROOM_SORTS,
    ROOM_STATUSES,
    Capabilities,
    ErrorBody,
    Item,
    Operation,
    Page,
    Room,
)

API_VERSION = "1.0.0"
_REF = "#/components/schemas/{model}"
_RENAMES = {"Page_Room_": "RoomPage", "Page_Item_": "ItemPage"}

_COMMON_ERRORS = ("400", "404", "429", "500", "503")


def _schemas() -> dict[str, Any]:
    models: list[type[BaseModel]] = [Capabilities, Page[Room], Page[Item], Operation, ErrorBody]
    _, top = models_json_schema([(model, "serialization") for model in models], ref_template=_REF)
    text = json.dumps(top["$defs"])
    for old, new in _RENAMES.items():
        text = text.replace(f'"{old}"', f'"{new}"').replace(f'/{old}"', f'/{new}"')
    schemas: dict[str, Any] = json.loads(text)
    return schemas


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json_content(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(schema)}}


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or {"type": "string"}}


_RETRY_AFTER = _header(
    "Seconds to wait before retrying.", {"type": "string", "pattern": "^[0-9]+$"}
)


def _responses() -> dict[str, Any]:
    def error(description: str, **headers: Any) -> dict[str, Any]:
        response: dict[str, Any] = {
            "description": description,
            "content": _json_content("ErrorBody"),
        }
        if headers:
            response["headers"] = {name.replace("_", "-"): value for name, value in headers.items()}
        return response

    return {
        "BadRequest": error("A parameter is malformed or out of range; the message names it."),
        "Unauthorized": error(
            "Missing or wrong bearer token.",
            WWW_Authenticate={**_header("Bearer challenge."), "required": True},
        ),
        "NotFound": error("No such object (ids are opaque; unknown ids are never guessed at)."),
        "Conflict": error("The object is in the wrong state for this call."),
        "PreconditionFailed": error("If-Match is missing or no longer matches the room's etag."),
        "RangeNotSatisfiable": error(
            "The range starts beyond the end of the file.",
            Content_Range={**_header("bytes */<size>"), "required": True},
        ),
        "RateLimited": error(
            "Throttled; retry after the delay.", Retry_After={**_RETRY_AFTER, "required": True}
        ),
        "ServerError": error("The proxy or its backend failed; retrying may help."),
        "Unavailable": error(
            "Temporarily unavailable; retry after the delay.",
            Retry_After={**_RETRY_AFTER, "required": True},
        ),
    }


_ERROR_REFS = {
    "400": "BadRequest",
    "401": "Unauthorized",
    "404": "NotFound",
    "409": "Conflict",
    "412": "PreconditionFailed",
    "416": "RangeNotSatisfiable",
    "429": "RateLimited",
    "500": "ServerError",
    "503": "Unavailable",
}


def _errors(*codes: str, secured: bool) -> dict[str, Any]:
    wanted = [*codes, *_COMMON_ERRORS] + (["401"] if secured else [])
    return {
        code: {"$ref": f"#/components/responses/{_ERROR_REFS[code]}"}
        for code in sorted(set(wanted))
    }


def _param(name: str, where: str, schema: dict[str, Any], description: str, **extra: Any) -> Any:
    parameter: dict[str, Any] = {
        "name": name,
        "in": where,
        "schema": schema,
        "description": description,
    }
    parameter.update(extra)
    if where == "path":
        parameter["required"] = True
    return parameter


def _id(name: str, what: str) -> dict[str, Any]:
    schema = {"type": "string", "minLength": 1, "pattern": "^[^/:]+$"}
    return _param(name, "path", schema, f"Opaque id of the {what}.")


_CURSOR = _param(
    "cursor",
    "query",
    {"type": "string", "minLength": 1},
    "Opaque cursor from the previous page's next_cursor; omit for the first page.",
)
_LIMIT = _param(
    "limit",
    "query",
    {"type": "integer", "minimum": 1},
    "Items per page (default 100); larger values are capped at capabilities.max_page_size.",
)


def _ok(description: str, schema: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": _json_content(schema)}
    if headers:
        response["headers"] = headers
    return response


def _operation_call(
    summary: str,
    op_id: str,
    target: str,
    *codes: str,
    secured: bool,
    parameters: list[Any] | None = None,
    description: str = "",
) -> Any:
    return {
        "post": {
            "operationId": op_id,
            "summary": summary,
            "description": description,
            "parameters": [_id(f"{target}_id", target), *(parameters or [])],
            "responses": {
                "202": _ok(
                    "Accepted; the operation's state (it may already be finished).",
                    "Operation",
                    {"Location": {**_header("URL of the operation."), "required": True}},
                ),
                **_errors(*codes, secured=secured),
            },
        }
    }


def _paths(secured: bool) -> dict[str, Any]:
    search_parameters = [
        _param("query", "query", {"type": "string"}, "Text the room name contains (any case)."),
        _param("status", "query", {"type": "string", "enum": list(ROOM_STATUSES)}, "Room status."),
        _param("owner", "query", {"type": "string"}, "Text in the owner's id, name or email."),
        _param(
            "sort",
            "query",
            {"type": "string", "enum": list(ROOM_SORTS), "default": "name"},
            "Order; a leading '-' reverses it.",
        ),
        _param(
            "inactive_days",
            "query",
            {"type": "integer", "minimum": 0},
            "Only rooms with no activity for at least this many days.",
        ),
        _CURSOR,
        _LIMIT,
    ]
    byte_headers = {
        "Content-Length": {**_header("Bytes in this body.", {"type": "integer"}), "required": True},
        "ETag": _header("Entity tag of the file's version (use it in If-Range)."),
        "Accept-Ranges": _header("Always 'bytes'."),
    }
    binary = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    return {
        "/v1/capabilities": {
            "get": {
                "operationId": "getCapabilities",
                "summary": "What this backend supports",
                "responses": {
                    "200": _ok("The capabilities.", "Capabilities"),
                    **_errors(secured=secured),
                },
            }
        },
        "/v1/rooms": {
            "get": {
                "operationId": "searchRooms",
                "summary": "Search rooms",
                "parameters": search_parameters,
                "responses": {
                    "200": _ok("One page of rooms.", "RoomPage"),
                    **_errors(secured=secured),
                },
            }
        },
        "/v1/rooms/{room_id}": {
            "get": {
                "operationId": "getRoom",
                "summary": "One room",
                "parameters": [_id("room_id", "room")],
                "responses": {
                    "200": _ok("The room.", "Room", {"ETag": _header("The room's etag, quoted.")}),
                    **_errors(secured=secured),
                },
            }
        },
        "/v1/rooms/{room_id}:trash": _operation_call(
            "Move a room to the trash",
            "trashRoom",
            "room",
            secured=secured,
            description="Trashing a trashed room changes nothing and succeeds.",
        ),
        "/v1/rooms/{room_id}:restore": _operation_call(
            "Bring a trashed room back",
            "restoreRoom",
            "room",
            "409",
            secured=secured,
            description="Restoring a room that is not trashed changes nothing and succeeds.",
        ),
        "/v1/rooms/{room_id}:purge": _operation_call(
            "Delete a trashed room for good",
            "purgeRoom",
            "room",
            "409",
            "412",
            secured=secured,
            parameters=[
                _param(
                    "If-Match",
                    "header",
                    {"type": "string"},
                    "The room's etag as last read; '*' matches any.",
                    required=True,
                )
            ],
            description="Only a trashed room; 409 otherwise, 412 when the etag does not match.",
        ),
        "/v1/folders/{folder_id}/children": {
            "get": {
                "operationId": "listChildren",
                "summary": "Items directly inside a folder",
                "parameters": [_id("folder_id", "folder"), _CURSOR, _LIMIT],
                "responses": {
                    "200": _ok("One page of items.", "ItemPage"),
                    **_errors(secured=secured),
                },
            }
        },
        "/v1/files/{file_id}/content": {
            "get": {
                "operationId": "getFileContent",
                "summary": "A file's bytes, whole or a single range",
                "parameters": [
                    _id("file_id", "file"),
                    _param(
                        "Range",
                        "header",
                        {"type": "string"},
                        "One range, 'bytes=start-[end]' or 'bytes=-suffix'; others are ignored.",
                    ),
                    _param(
                        "If-Range",
                        "header",
                        {"type": "string"},
                        "Send the range only if the file's ETag still matches.",
                    ),
                ],
                "responses": {
                    "200": {
                        "description": "The whole file.",
                        "content": binary,
                        "headers": byte_headers,
                    },
                    "206": {
                        "description": "The range asked for.",
                        "content": binary,
                        "headers": {
                            **byte_headers,
                            "Content-Range": {**_header("bytes start-end/size"), "required": True},
                        },
                    },
                    "202": {
                        "description": "Not ready yet (a backend preparing the download); retry.",
                        "headers": {"Retry-After": _RETRY_AFTER},
                    },
                    "302": {
                        "description": "Download elsewhere: follow Location without Authorization.",
                        "headers": {"Location": {**_header("Download URL."), "required": True}},
                    },
                    **_errors("416", secured=secured),
                },
            }
        },
        "/v1/items/{item_id}:trash": _operation_call(
            "Move an item to the trash",
            "trashItem",
            "item",
            "409",
            secured=secured,
            description="Not a room's root folder (409); trashing a trashed item succeeds.",
        ),
        "/v1/items/{item_id}:purge": _operation_call(
            "Delete an item for good",
            "purgeItem",
            "item",
            "409",
            secured=secured,
            description="Folders only once empty (409 otherwise): purge files, then folders, "
            "deepest first.",
        ),
        "/v1/operations/{operation_id}": {
            "get": {
                "operationId": "getOperation",
                "summary": "State of a trash, restore or purge",
                "parameters": [_id("operation_id", "operation")],
                "responses": {
                    "200": _ok("The operation.", "Operation"),
                    **_errors(secured=secured),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }


def openapi_document(*, secured: bool) -> dict[str, Any]:
    """The whole document; `secured` adds the bearer requirement (a token is configured)."""
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "vdr-ops canonical VDR API",
            "version": API_VERSION,
            "description": (
                "One API over any VDR backend. Lists are pages with opaque cursors; items are "
                "addressed by id, never by path. Every error has the shape "
                '{"error": {"code", "message", "retry_after_s"}}; 429 and 503 carry '
                "Retry-After."
            ),
        },
        "paths": _paths(secured),
        "components": {"schemas": _schemas(), "responses": _responses()},
    }
    if secured:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document
