"""Shared pieces of the proxy tests: an HTTP client per server, and both backends by name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy import DirectoryBackend, ProxyServer, SyntheticBackend
from proxy.backends import Backend


@pytest.fixture(params=["directory", "synthetic"])
def backend(
    request: pytest.FixtureRequest,
    directory_root: Path,
    synthetic_backend: Callable[..., SyntheticBackend],
) -> Iterator[Backend]:
    """Each test using this runs once per backend."""
    if request.param == "directory":
        directory = DirectoryBackend(directory_root)
        yield directory
        directory.close()
    else:
        yield synthetic_backend()


@pytest.fixture
def served(backend: Backend, make_proxy: Callable[..., ProxyServer]) -> ProxyServer:
    return make_proxy(backend)


@pytest.fixture
def http(served: ProxyServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        yield client


def all_items(http: httpx.Client, folder_id: str, limit: int = 1000) -> list[dict[str, Any]]:
    """Every item of a folder, following cursors."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = http.get(f"/v1/folders/{folder_id}/children", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return items


def walk(http: httpx.Client, folder_id: str, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every item below a folder by '/'-joined path of names."""
    found: dict[str, dict[str, Any]] = {}
    for item in all_items(http, folder_id):
        path = f"{prefix}{item['name']}"
        found[path] = item
        if item["type"] == "folder":
            found.update(walk(http, item["id"], path + "/"))
    return found
