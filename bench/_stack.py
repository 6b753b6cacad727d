"""The services a benchmark run measures against, each in a process of its own on 127.0.0.1.

moto's S3 server and the proxy run as separate processes so that neither shares the GIL of
the process being measured; every tool in a ratio talks to the same two. Only this script's
own environment (and its children's) points boto3, s5cmd and rclone at the moto server.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REDIS_URL = os.environ.get("VDR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
"""This benchmark's Redis database (7 unless VDR_BENCH_REDIS_URL says; flushed before each
scene, so two runs at once need two databases)."""

S3_KEY = "bench"
"""Access key and secret moto accepts; any value will do."""

_MOTO_MAIN = """
import signal, sys
from moto.server import ThreadedMotoServer
stops = {signal.SIGTERM, signal.SIGINT}
signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # before any thread starts: sigwait gets them
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
server.start()
signal.sigwait(stops)
server.stop()
"""

STARTUP_TIMEOUT_S = 30.0


class StackError(RuntimeError):
    """A service of the benchmark did not start."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bin_path(name: str) -> str | None:
    """A program from this venv first (s5cmd, vdr), else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


@dataclass
class Service:
    """A child process serving HTTP on `url`."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wait_http(service: Service, probe: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise StackError(f"{service.name} exited at start; see {service.log}")
        try:
            with urllib.request.urlopen(service.url + probe, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers: up
        except OSError:
            time.sleep(0.1)
    service.stop()
    raise StackError(f"{service.name} did not answer on {service.url}; see {service.log}")


def _spawn(
    name: str, argv: Sequence[str], port: int, workdir: Path, probe: str,
    extra_env: dict[str, str] | None = None,
) -> Service:
    log = workdir / f"{name}.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            list(argv), stdout=sink, stderr=subprocess.STDOUT,
            env={**os.environ, **(extra_env or {})},
            start_new_session=True,
        )
    service = Service(name, f"http://127.0.0.1:{port}", process, log)
    _wait_http(service, probe)
    return service


def start_moto(workdir: Path) -> Service:
    port = free_port()
    argv = [sys.executable, "-c", _MOTO_MAIN, str(port)]
    return _spawn("moto", argv, port, workdir, "/", extra_env=_in_memory_temp())


def _in_memory_temp() -> dict[str, str]:
    """Where moto's temp files go: RAM (/dev/shm) when the machine has it.

    moto keeps every object or part over 8 MiB in a temp file, so by default a large upload
    also writes the local disk twice (the parts, then the assembled object). Real S3 shares no
    disk with the machine exporting, and our export writes that same disk as well: left there,
    moto's writes and ours would queue for it, a cost of the stand-in rather than of either
    tool under test."""
    shm = Path("/dev/shm")
    return {"TMPDIR": str(shm)} if shm.is_dir() and os.access(shm, os.W_OK) else {}


def start_proxy(workdir: Path, rooms: Sequence[str], *, latency_ms: float = 0.0) -> Service:
    """`vdr proxy` over the synthetic backend with exactly these room specs."""
    vdr = bin_path("vdr")
    if vdr is None:
        raise StackError("the vdr command is not installed in this environment")
    port = free_port()
    argv = [vdr, "proxy", "--backend", "synthetic", "--rooms", "0", "--host", "127.0.0.1",
            "--port", str(port)]
    for spec in rooms:
        argv += ["--room", spec]
    if latency_ms:
        argv += ["--latency-ms", str(latency_ms)]
    name = f"proxy-{port}"
    return _spawn(name, argv, port, workdir, "/v1/capabilities")


def point_at(moto_url: str, workdir: Path) -> None:
    """This process's (and so its children's) environment: S3 is the moto server, nothing
    else; no profile, config file or instance metadata can be consulted."""
    for key in list(os.environ):
        if key.startswith(("AWS_", "VDR_", "RCLONE_")):
            del os.environ[key]
    os.environ.update(
        AWS_ENDPOINT_URL_S3=moto_url,
        AWS_ACCESS_KEY_ID=S3_KEY,
        AWS_SECRET_ACCESS_KEY=S3_KEY,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        REDIS_URL=REDIS_URL,
        DATABASE_URL=f"sqlite:///{workdir / 'bench.db'}",
        EXPORT_ROOT=str(workdir / "exports"),
    )


@contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vdr-bench-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def s3_client(max_connections: int = 64) -> object:
    import boto3
    from botocore.config import Config

    config = Config(max_pool_connections=max_connections, retries={"mode": "standard"})
    return boto3.session.Session().client("s3", config=config)
