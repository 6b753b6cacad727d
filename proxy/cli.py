"""`vdr proxy`: serve the canonical VDR API over a backend, in the foreground."""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import uvicorn

from proxy._app import build_app
from proxy._faults import FAULTS_ENV, FaultConfig
from proxy._server import uvicorn_options
from proxy.backends import Backend, DirectoryBackend, RoomSpec, SyntheticBackend
from proxy.backends._common import parse_size
from proxy.backends.synthetic import HASH_MAX_BYTES
from vdr_ops import defaults
from vdr_ops.settings import get_settings

log = logging.getLogger("vdr.proxy")

_FAULT_FLAGS = {
    "latency_ms": "latency_ms",
    "bandwidth": "bandwidth",
    "p429": "p429",
    "p5xx": "p5xx",
    "p_cut": "p_cut",
    "p_drop": "p_drop",
    "fault_seed": "seed",
    "retry_after": "retry_after_s",
}


def _room_spec(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> list[RoomSpec]:
    try:
        return [RoomSpec.parse(value) for value in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    try:
        return None if value is None else parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _faults(flags: dict[str, Any]) -> FaultConfig:
    """Faults from VDR_FAULTS, then the flags given on the command line on top."""
    try:
        config = FaultConfig.from_env()
        chosen = {_FAULT_FLAGS[name]: value for name, value in flags.items() if value is not None}
        return replace(config, **chosen)
    except ValueError as exc:
        raise click.UsageError(f"faults: {exc}") from exc


def _backend(options: dict[str, Any]) -> Backend:
    if options["backend"] == "directory":
        if options["root"] is None:
            raise click.UsageError("--backend directory needs --root PATH (a folder of rooms)")
        return DirectoryBackend(options["root"])
    return SyntheticBackend(
        seed=options["seed"],
        rooms=options["rooms"],
        specs=options["room_specs"],
        hostile_names=options["hostile_names"],
        room_purge=options["room_purge"],
        hash_max_bytes=options["hash_max_bytes"],
    )


def _check_port_free(host: str, port: int) -> None:
    """Refuse at once, with what to do, when another program holds the port: uvicorn would
    report it only after this command announced that it serves there."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise click.ClickException(
                f"port {port} on {host} is in use: stop what holds it, or pass --port"
            ) from error
        raise click.ClickException(f"cannot serve on {host}:{port}: {error.strerror}") from error


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@click.command("proxy")
@click.option(
    "--backend",
    type=click.Choice(["directory", "synthetic"]),
    default="synthetic",
    show_default=True,
    help="What the rooms are: folders on disk, or generated.",
)
@click.option(
    "--root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="directory: the folder whose sub-folders are rooms.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="synthetic: the seed.")
@click.option(
    "--rooms",
    type=click.IntRange(min=0),
    default=12,
    show_default=True,
    help="synthetic: how many random rooms.",
)
@click.option(
    "--room",
    "room_specs",
    multiple=True,
    callback=_room_spec,
    help='synthetic: an explicit room, e.g. "bench-small:files=2000:size=4096". '
    "Keys: files, size, mean, folders, depth, status, owner. Repeatable.",
)
@click.option(
    "--hostile-names",
    is_flag=True,
    help="synthetic: add a room of names built to break exporters (traversal, separators, "
    "control characters, twins ...), and mix such names into the other rooms' folders too.",
)
@click.option(
    "--room-purge",
    type=click.Choice(["native", "by_items", "none"]),
    default="native",
    show_default=True,
    help="synthetic: how rooms can be purged.",
)
@click.option("--hash-max-bytes", callback=_size, default=str(HASH_MAX_BYTES), show_default=True,
              help="synthetic: larger files are listed without sha256 (hashing generated "
              "bytes costs listing time; 0: only empty files keep one).")
@click.option("--host", default=defaults.PROXY_HOST, show_default=True)
@click.option("--port", type=int, default=defaults.PROXY_PORT, show_default=True)
@click.option("--latency-ms", type=click.FloatRange(min=0), help="Fault: delay per request.")
@click.option("--bandwidth", callback=_size, help="Fault: bytes/s per body, e.g. 2m.")
@click.option("--p429", type=click.FloatRange(0, 1), help="Fault: share of 429 answers.")
@click.option("--p5xx", type=click.FloatRange(0, 1), help="Fault: share of 500/503 answers.")
@click.option("--p-cut", type=click.FloatRange(0, 1), help="Fault: share of bodies cut short.")
@click.option("--p-drop", type=click.FloatRange(0, 1), help="Fault: share of dropped connections.")
@click.option("--fault-seed", type=int, help="Fault: seed of the fault generator.")
@click.option("--retry-after", type=click.FloatRange(min=0), help="Fault: Retry-After seconds.")
def proxy(**options: Any) -> None:
    """Serve the canonical VDR API (v1) over a backend.

    Faults may also come from the environment, e.g.
    VDR_FAULTS="p429=0.05,p5xx=0.05,cut=0.02,drop=0.01,latency_ms=20"; flags win.
    A bearer token is required when VDR_API_TOKEN is set.
    """
    faults = _faults({name: options.pop(name) for name in list(_FAULT_FLAGS)})
    backend = _backend(options)
    secret = get_settings().vdr_api_token
    token = secret.get_secret_value() if secret else None
    if token is None and not _is_loopback(options["host"]):
        click.echo(
            f"warning: serving {options['host']} without a token; set VDR_API_TOKEN", err=True
        )

    app = build_app(backend, token=token, faults=faults)
    _check_port_free(options["host"], options["port"])
    click.echo(
        f"vdr proxy: {backend.name} backend on http://{options['host']}:{options['port']} "
        f"(token {'required' if token else 'not required'}; faults: {faults.describe()}; "
        f"{FAULTS_ENV} read)",
        err=True,
    )
    uvicorn.run(app, host=options["host"], port=options["port"], **uvicorn_options())
