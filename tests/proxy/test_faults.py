"""Faults happen for real on the wire, at the configured rates, and only where configured."""

from __future__ import annotations

import hashlib
import math
import socket
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from proxy import FaultConfig, ProxyServer, RoomSpec, SyntheticBackend


def one_file_room(synthetic_backend: Callable[..., SyntheticBackend], size: int) -> Any:
    return synthetic_backend(specs=[RoomSpec("flat", files=3, file_size=size, folders=0)])


def first_file(server: ProxyServer) -> dict[str, Any]:
    with httpx.Client(base_url=server.url) as http:
        room = http.get("/v1/rooms").json()["items"][0]
        return http.get(f"/v1/folders/{room['root_folder_id']}/children").json()["items"][0]


def raw_get(server: ProxyServer, path: str) -> bytes:
    """Everything the server sends for one request, until it closes the connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                None,
            )
            if length is not None and len(body) >= length:
                break  # a complete answer: the connection stays open for the next request
        return received


def test_a_cut_body_is_cut_on_the_wire(
    make_proxy: Callable[..., ProxyServer], synthetic_backend: Callable[..., SyntheticBackend]
) -> None:
    server = make_proxy(one_file_room(synthetic_backend, 500_000))
    item = first_file(server)
    server.set_faults(FaultConfig(p_cut=1.0, seed=3))

    received = raw_get(server, f"/v1/files/{item['id']}/content")
    head, _, body = received.partition(b"\r\n\r\n")

    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-length: 500000" in head.lower()
    assert len(body) < 500_000
    assert server.faults.counts["cut"] == 1
    with httpx.Client(base_url=server.url) as http, pytest.raises(httpx.RemoteProtocolError):
        http.get(f"/v1/files/{item['id']}/content")


def test_a_dropped_connection_gets_no_answer_at_all(
    make_proxy: Callable[..., ProxyServer], synthetic_backend: Callable[..., SyntheticBackend]
) -> None:
    server = make_proxy(synthetic_backend(), faults=FaultConfig(p_drop=1.0))

    assert raw_get(server, "/v1/capabilities") == b""
    with httpx.Client(base_url=server.url) as http:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            http.get("/v1/capabilities")
    assert server.faults.counts["drop"] == 2


def test_throttles_and_outages_say_when_to_retry(
    make_proxy: Callable[..., ProxyServer], synthetic_backend: Callable[..., SyntheticBackend]
) -> None:
    server = make_proxy(synthetic_backend(), faults=FaultConfig(p429=1.0, retry_after_s=2.5))
    with httpx.Client(base_url=server.url) as http:
        throttled = http.get("/v1/rooms")
        server.set_faults(FaultConfig(p5xx=1.0, seed=0, retry_after_s=0))
        outages = [http.get("/v1/rooms") for _ in range(20)]

    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "3"
    assert throttled.json()["error"] == {
        "code": "rate_limited",
        "message": "too many requests (injected fault); retry after the delay",
        "retry_after_s": 2.5,
    }
    assert {response.status_code for response in outages} == {500, 503}
    for response in outages:
        assert response.json()["error"]["code"] in ("internal", "unavailable")
        if response.status_code == 503:
            assert response.headers["retry-after"] == "0"


def _outcome(http: httpx.Client) -> str:
    try:
        response = http.get("/v1/capabilities")
    except httpx.RemoteProtocolError as exc:
        return "drop" if "without sending a response" in str(exc) else "cut"
    return {200: "ok", 429: "429", 500: "5xx", 503: "5xx"}[response.status_code]


def _within(count: int, trials: int, probability: float) -> bool:
    """True when `count` is within 4.5 standard deviations of the binomial expectation."""
    spread = 4.5 * math.sqrt(trials * probability * (1 - probability))
    return abs(count - trials * probability) <= spread


def test_faults_occur_at_the_configured_rates(
    make_proxy: Callable[..., ProxyServer], synthetic_backend: Callable[..., SyntheticBackend]
) -> None:
    config = FaultConfig(p429=0.1, p5xx=0.08, p_drop=0.05, p_cut=0.15, seed=11)
    server = make_proxy(synthetic_backend(), faults=config)
    trials = 800

    with httpx.Client(base_url=server.url) as http:
        seen = Counter(_outcome(http) for _ in range(trials))

    answered = trials * (1 - 0.1 - 0.08 - 0.05)
    assert _within(seen["429"], trials, 0.1), seen
    assert _within(seen["5xx"], trials, 0.08), seen
    assert _within(seen["drop"], trials, 0.05), seen
    assert _within(seen["cut"], int(answered), 0.15), seen
    assert server.faults.counts["requests"] == trials
    assert server.faults.counts["cut"] == seen["cut"]
    assert server.faults.counts["drop"] == seen["drop"]


def test_the_same_seed_replays_the_same_faults(
    make_proxy: Callable[..., ProxyServer], synthetic_backend: Callable[..., SyntheticBackend]
) -> None:
    config = FaultConfig(p429=0.2, p5xx=0.2, p_drop=0.1, p_cut=0.2, seed=5)
    server = make_proxy(synthetic_backend(), faults=config)
    runs = []
    for _ in range(2):
        server.set_faults(config)
        with httpx.Client(base_url=server.url) as http:
            runs.append([_outcome(http) for _ in range(60)])

    assert runs[0] == runs[1]
    assert len(set(runs[0])) == 5


def test_the_openapi_document_is_never_faulted(
    make_proxy: Callable[..., ProxyServer], synthetic_backend: Callable[..., SyntheticBackend]
) -> None:
    server = make_proxy(synthetic_backend(), faults=FaultConfig(p_drop=1.0, latency_ms=500))
    with httpx.Client(base_url=server.url) as http:
        response = http.get("/openapi.json")

    assert response.status_code == 200
    assert server.faults.counts["requests"] == 0  # the fault layer never even drew for it


def test_latency_delays_every_request(
    make_proxy: Callable[..., ProxyServer], synthetic_backend: Callable[..., SyntheticBackend]
) -> None:
    server = make_proxy(synthetic_backend(), faults=FaultConfig(latency_ms=150))
    with httpx.Client(base_url=server.url) as http:
        started = time.perf_counter()
        http.get("/v1/capabilities")
        elapsed = time.perf_counter() - started

    assert elapsed >= 0.15


def test_bandwidth_caps_the_body_rate(
    make_proxy: Callable[..., ProxyServer], synthetic_backend: Callable[..., SyntheticBackend]
) -> None:
    server = make_proxy(one_file_room(synthetic_backend, 300_000))
    item = first_file(server)
    server.set_faults(FaultConfig(bandwidth=600_000))
    with httpx.Client(base_url=server.url) as http:
        started = time.perf_counter()
        body = http.get(f"/v1/files/{item['id']}/content").content
        elapsed = time.perf_counter() - started

    assert len(body) == 300_000
    assert elapsed >= 0.45  # 300 kB at 600 kB/s


def test_switching_faults_off_restores_normal_service(
    make_proxy: Callable[..., ProxyServer], synthetic_backend: Callable[..., SyntheticBackend]
) -> None:
    server = make_proxy(synthetic_backend(), faults=FaultConfig(p429=1.0))
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/v1/capabilities").status_code == 429
        server.set_faults(None)
        assert http.get("/v1/capabilities").status_code == 200


def _fetch(http: httpx.Client, path: str, **headers: str) -> httpx.Response:
    """GET that retries injected faults the simple way (the real client does it properly)."""
    for _ in range(60):
        try:
            response = http.get(path, headers=headers)
        except httpx.TransportError:
            continue
        if response.status_code not in (429, 500, 503):
            return response
    raise AssertionError(f"{path} kept failing")


def _download(http: httpx.Client, item: dict[str, Any]) -> bytes:
    """Bytes of a file, resuming with Range after every cut."""
    received = b""
    while len(received) < item["size"] or item["size"] == 0:
        try:
            with http.stream(
                "GET",
                f"/v1/files/{item['id']}/content",
                headers={"Range": f"bytes={len(received)}-"} if received else {},
            ) as response:
                if response.status_code in (429, 500, 503):
                    continue
                assert response.status_code == (206 if received else 200)
                for chunk in response.iter_bytes():
                    received += chunk
        except httpx.TransportError:
            continue
        if item["size"] == 0:
            break
    return received


def test_a_10k_item_room_lists_completely_and_downloads_right_under_faults(
    make_proxy: Callable[..., ProxyServer], synthetic_backend: Callable[..., SyntheticBackend]
) -> None:
    backend = synthetic_backend(
        specs=[RoomSpec("fault-room", files=10_000, file_size=2048, folders=150, depth=4)]
    )
    faults = FaultConfig(p429=0.05, p5xx=0.05, p_cut=0.02, p_drop=0.01, seed=2, retry_after_s=0)
    server = make_proxy(backend, faults=faults)

    with httpx.Client(base_url=server.url, timeout=30) as http:
        room = _fetch(http, "/v1/rooms").json()["items"][0]
        files: list[dict[str, Any]] = []
        folders = [room["root_folder_id"]]
        while folders:
            folder_id, cursor = folders.pop(), None
            while True:
                query = f"?limit=500&cursor={cursor}" if cursor else "?limit=500"
                page = _fetch(http, f"/v1/folders/{folder_id}/children{query}").json()
                files += [item for item in page["items"] if item["type"] == "file"]
                folders += [item["id"] for item in page["items"] if item["type"] == "folder"]
                if not (cursor := page["next_cursor"]):
                    break

        sample = files[::10]
        with ThreadPoolExecutor(4) as pool:
            bodies = list(pool.map(lambda item: _download(http, item), sample))

    assert len(files) == room["file_count"] == 10_000
    assert len({item["id"] for item in files}) == 10_000
    for item, body in zip(sample, bodies, strict=True):
        assert hashlib.sha256(body).hexdigest() == item["hashes"]["sha256"]
    counts = server.faults.counts
    assert counts["429"] and counts["500"] + counts["503"] and counts["cut"] and counts["drop"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", FaultConfig()),
        (
            "p429=0.05,p5xx=0.05,cut=0.02,drop=0.01,latency_ms=20",
            FaultConfig(p429=0.05, p5xx=0.05, p_cut=0.02, p_drop=0.01, latency_ms=20),
        ),
        (
            "bandwidth=2m, seed=9, retry_after=0.5",
            FaultConfig(bandwidth=2 << 20, seed=9, retry_after_s=0.5),
        ),
    ],
)
def test_fault_text_parses(text: str, expected: FaultConfig) -> None:
    assert FaultConfig.parse(text) == expected
    assert FaultConfig.from_env({"VDR_FAULTS": text}) == expected


@pytest.mark.parametrize(
    "text",
    [
        "p429=2",
        "cut=-0.1",
        "p429=0.6,p5xx=0.6",
        "bogus=1",
        "p429",
        "latency_ms=-5",
        "bandwidth=0",
        "seed=abc",
    ],
)
def test_bad_fault_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        FaultConfig.parse(text)


def test_an_unknown_fault_is_answered_with_the_keys_the_docs_use() -> None:
    with pytest.raises(ValueError, match="the keys p429, p5xx, cut, drop, latency_ms, bandwidth"):
        FaultConfig.parse("p503=0.1")
