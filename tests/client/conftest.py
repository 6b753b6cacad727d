"""Fixtures of the client's tests: the proxy as its own process, as operators run it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.fixtures.services import free_port

STARTUP_S = 20.0
"""How long a proxy process may take to answer its first request."""


@pytest.fixture
def proxy_process() -> Iterator[Callable[..., str]]:
    """Factory: `vdr proxy ARGS...` in a child process on a free loopback port; its base URL.

    A separate process gets its own interpreter (and GIL), so a load test measures the client
    and the proxy side by side instead of both fighting over one interpreter.
    """
    children: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> str:
        port = free_port()
        command = [sys.executable, "-c", "from vdr_ops.cli import main; main()",
                   "proxy", "--host", "127.0.0.1", "--port", str(port), *args]
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        children.append(child)
        url = f"http://127.0.0.1:{port}"
        _wait_until_serving(child, url)
        return url

    yield start
    for child in children:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stderr is not None:
            child.stderr.close()


def _wait_until_serving(child: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            errors = child.stderr.read().decode() if child.stderr else ""
            raise RuntimeError(f"vdr proxy exited with {child.returncode}: {errors}")
        try:
            httpx.get(f"{url}/openapi.json", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"vdr proxy did not answer on {url} within {STARTUP_S} s")
