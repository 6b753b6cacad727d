"""The OpenAPI document is valid, and the live server never contradicts it.

The property-based run (schemathesis) generates requests from the document against a live
proxy on 127.0.0.1, once per backend, with a bearer token so authentication is checked too.
It is bounded (few examples per operation) so the whole module stays well under a minute.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.config import SchemathesisConfig

from proxy import DirectoryBackend, ProxyServer, SyntheticBackend, openapi_document
from proxy.backends import hostile_names_on_disk

TOKEN = "test-token-not-secret"


@pytest.mark.parametrize("secured", [False, True])
def test_the_document_is_valid_openapi_31(secured: bool) -> None:
    document = openapi_document(secured=secured)

    validate(document)
    assert document["openapi"] == "3.1.0"
    assert ("security" in document) is secured


def test_the_served_document_describes_every_route(
    make_proxy: Callable[..., ProxyServer], synthetic_backend: Callable[..., SyntheticBackend]
) -> None:
    server = make_proxy(synthetic_backend(), token=TOKEN)
    document = httpx.get(f"{server.url}/openapi.json").json()

    validate(document)
    assert set(document["paths"]) == {
        "/v1/capabilities",
        "/v1/rooms",
        "/v1/rooms/{room_id}",
        "/v1/rooms/{room_id}:trash",
        "/v1/rooms/{room_id}:restore",
        "/v1/rooms/{room_id}:purge",
        "/v1/folders/{folder_id}/children",
        "/v1/files/{file_id}/content",
        "/v1/items/{item_id}:trash",
        "/v1/items/{item_id}:purge",
        "/v1/operations/{operation_id}",
        "/openapi.json",
    }
    error = document["components"]["schemas"]["ErrorDetail"]
    assert set(error["properties"]) == {"code", "message", "retry_after_s"}


@pytest.fixture(params=["directory", "synthetic"])
def live_server(
    request: pytest.FixtureRequest,
    directory_root: Path,
    make_proxy: Callable[..., ProxyServer],
    synthetic_backend: Callable[..., SyntheticBackend],
) -> ProxyServer:
    """A proxy with a token over each backend, its rooms holding the hostile names."""
    if request.param == "directory":
        hostile = directory_root / "Hostile"
        hostile.mkdir()
        for name in hostile_names_on_disk():
            (hostile / name).write_bytes(name.encode("utf-8", "surrogateescape"))
        backend: Any = DirectoryBackend(directory_root)
    else:
        backend = synthetic_backend(rooms=3, hostile_names=True)
    server = make_proxy(backend, token=TOKEN)
    served = httpx.get(f"{server.url}/openapi.json").json()
    assert served == SECURED_DOCUMENT  # so the document generating the cases is the live one
    return server


# A cursor is opaque: any string is schema-valid, but one the server never issued is a client
# error (400). Only the two paged calls take one, so only they may answer 400 to valid data.
CONFIG = SchemathesisConfig.from_str(
    """
[[operations]]
include-path-regex = "^/v1/(rooms|folders/[{]folder_id[}]/children)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404", "429", "5xx"]
"""
)
SECURED_DOCUMENT = json.loads(json.dumps(openapi_document(secured=True)))
schema = schemathesis.openapi.from_dict(SECURED_DOCUMENT, config=CONFIG)


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_the_live_server_never_contradicts_the_document(
    case: Any, live_server: ProxyServer
) -> None:
    case.call_and_validate(base_url=live_server.url, headers={"Authorization": f"Bearer {TOKEN}"})
