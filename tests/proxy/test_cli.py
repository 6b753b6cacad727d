"""`vdr proxy` starts a real server from flags and environment, and refuses bad input."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from proxy.cli import proxy
from tests.fixtures.services import free_port

VDR = str(Path(sys.executable).parent / "vdr")


def wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"vdr proxy exited: {process.stderr.read()!r}")  # type: ignore[union-attr]
        try:
            httpx.get(f"{url}/openapi.json", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("vdr proxy did not come up")


@pytest.fixture
def run_proxy(tmp_path: Path) -> Iterator[object]:
    started: list[subprocess.Popen[bytes]] = []
    clean = {k: v for k, v in os.environ.items() if k not in ("VDR_API_TOKEN", "VDR_FAULTS")}

    def run(*args: str, env: dict[str, str] | None = None) -> str:
        port = free_port()
        process = subprocess.Popen(
            [VDR, "proxy", "--port", str(port), *args],
            env={**clean, **(env or {})},
            cwd=tmp_path,  # no stray .env file is read
            stderr=subprocess.PIPE,
        )
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, process)
        return url

    yield run
    for process in started:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


def test_synthetic_proxy_from_flags_with_token_and_faults(run_proxy: object) -> None:
    url = run_proxy(  # type: ignore[operator]
        "--backend",
        "synthetic",
        "--seed",
        "3",
        "--rooms",
        "2",
        "--room",
        "bench-small:files=50:size=4k",
        "--hostile-names",
        "--p429",
        "1",
        "--p5xx",
        "0",
        "--retry-after",
        "0",
        env={"VDR_API_TOKEN": "cli-token", "VDR_FAULTS": "p5xx=1,latency_ms=1"},
    )
    headers = {"Authorization": "Bearer cli-token"}

    assert httpx.get(f"{url}/openapi.json").status_code == 200  # never faulted
    throttled = httpx.get(f"{url}/v1/rooms", headers=headers)
    assert throttled.status_code == 429  # the flags won over VDR_FAULTS' p5xx
    assert throttled.headers["retry-after"] == "0"


def test_directory_proxy_serves_the_root_behind_the_token(
    run_proxy: object, directory_root: Path
) -> None:
    url = run_proxy(  # type: ignore[operator]
        "--backend",
        "directory",
        "--root",
        str(directory_root),
        env={"VDR_API_TOKEN": "cli-token", "VDR_FAULTS": ""},
    )
    response = httpx.get(f"{url}/v1/rooms", headers={"Authorization": "Bearer cli-token"})

    assert httpx.get(f"{url}/v1/rooms").status_code == 401
    assert [room["name"] for room in response.json()["items"]] == ["Project Alpha", "Project Beta"]


def test_synthetic_rooms_from_specs(run_proxy: object) -> None:
    url = run_proxy(  # type: ignore[operator]
        "--rooms", "0", "--room", "bench:files=7:size=100:folders=0", "--hash-max-bytes", "99"
    )
    room = httpx.get(f"{url}/v1/rooms").json()["items"][0]
    items = httpx.get(f"{url}/v1/folders/{room['root_folder_id']}/children").json()["items"]

    assert (room["name"], room["file_count"], room["size"]["total_bytes"]) == ("bench", 7, 700)
    assert [item["hashes"] for item in items] == [{}] * 7  # 100-byte files, over the limit


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--backend", "directory"], {}, "needs --root"),
        (["--room", "x:colour=red"], {}, "unknown key"),
        (["--bandwidth", "fast"], {}, "not a size"),
        ([], {"VDR_FAULTS": "p429=3"}, "between 0 and 1"),
        (["--p429", "0.7", "--p5xx", "0.7"], {}, "add up to 1"),
    ],
)
def test_bad_options_are_refused_before_serving(
    args: list[str], env: dict[str, str], message: str
) -> None:
    result = CliRunner().invoke(proxy, args, env=env)

    assert result.exit_code == 2
    assert message in result.output


def test_a_port_in_use_is_refused_with_what_to_do() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = CliRunner().invoke(proxy, ["--backend", "synthetic", "--host", "127.0.0.1",
                                            "--port", str(port)])

    assert result.exit_code == 1
    assert f"port {port} on 127.0.0.1 is in use" in result.output and "--port" in result.output
    assert "backend on http" not in result.output  # nothing announced as served
