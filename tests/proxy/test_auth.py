"""A bearer token is required when one is set; the OpenAPI document stays readable."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import httpx
import pytest

from proxy import ProxyServer, SyntheticBackend

TOKEN = "s3cr3t-token-for-tests"


@pytest.fixture
def secured(
    make_proxy: Callable[..., ProxyServer], synthetic_backend: Callable[..., SyntheticBackend]
) -> ProxyServer:
    return make_proxy(synthetic_backend(), token=TOKEN)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
    ],
)
def test_calls_without_the_right_token_are_401(
    secured: ProxyServer, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    for path in ("/v1/capabilities", "/v1/rooms", "/v1/rooms/anything", "/v1/no-such-path"):
        response = httpx.get(f"{secured.url}{path}", headers=headers)

        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["error"]["code"] == "unauthorized"
        assert TOKEN not in response.text
    assert httpx.post(f"{secured.url}/v1/rooms/x:trash", headers=headers).status_code == 401


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_right_token_is_accepted(secured: ProxyServer, scheme: str) -> None:
    response = httpx.get(f"{secured.url}/v1/rooms", headers={"Authorization": f"{scheme} {TOKEN}"})
    assert response.status_code == 200


def test_the_openapi_document_needs_no_token_and_declares_bearer(secured: ProxyServer) -> None:
    document = httpx.get(f"{secured.url}/openapi.json").json()

    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert document["security"] == [{"bearer": []}]


def test_without_a_token_the_api_is_open(
    make_proxy: Callable[..., ProxyServer], synthetic_backend: Callable[..., SyntheticBackend]
) -> None:
    server = make_proxy(synthetic_backend())
    assert httpx.get(f"{server.url}/v1/rooms").status_code == 200
    assert "security" not in httpx.get(f"{server.url}/openapi.json").json()


def test_the_access_log_has_one_line_per_request_and_no_secret(
    secured: ProxyServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="vdr.proxy"):
        httpx.get(
            f"{secured.url}/v1/rooms?query=falcon", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        httpx.get(f"{secured.url}/v1/rooms", headers={"Authorization": "Bearer guess"})

        lines: list[str] = []
        deadline = time.monotonic() + 10
        while len(lines) < 2 and time.monotonic() < deadline:  # logged just after answering
            time.sleep(0.01)
            lines = [r.getMessage() for r in caplog.records if r.name == "vdr.proxy"]

    assert len(lines) == 2
    assert sorted(" ".join(line.split()[:3]) for line in lines) == [
        "GET /v1/rooms 401",
        "GET /v1/rooms?query=falcon 200",
    ]
    assert not any(TOKEN in line or "guess" in line for line in lines)
