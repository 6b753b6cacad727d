"""The VDR API gateway: the canonical API (v1) over a pluggable backend.

    app = build_app(SyntheticBackend(seed=1), token=None, faults=FaultConfig(p429=0.05))
    with ProxyServer(app) as server:      # uvicorn in a thread, on a free loopback port
        VdrClient(server.url) ...

Backends live in `proxy.backends` (`DirectoryBackend`, `SyntheticBackend`, the `Backend`
contract and its errors). `vdr proxy` (see `proxy.cli`) runs the same app in the foreground.
"""

from proxy._app import ProxyApp, build_app
from proxy._faults import FAULTS_ENV, FaultConfig, FaultState
from proxy._openapi import openapi_document
from proxy._server import ProxyServer, ProxyServerError
from proxy.backends import Backend, DirectoryBackend, RoomSpec, SyntheticBackend

__all__ = [
    "FAULTS_ENV",
    "Backend",
    "DirectoryBackend",
    "FaultConfig",
    "FaultState",
    "ProxyApp",
    "ProxyServer",
    "ProxyServerError",
    "RoomSpec",
    "SyntheticBackend",
    "build_app",
    "openapi_document",
]
