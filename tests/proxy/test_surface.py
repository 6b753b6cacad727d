"""The public surface of `proxy` is what its `__all__` says, and nothing private leaks in."""

from __future__ import annotations

import proxy
import proxy.backends


def test_every_public_name_exists() -> None:
    for module in (proxy, proxy.backends):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_the_surface_is_small_and_public() -> None:
    assert set(proxy.__all__) == {
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
    }
    assert not any(name.startswith("_") for name in proxy.__all__ + proxy.backends.__all__)


def test_the_proxy_package_knows_nothing_of_slack_rq_or_s3() -> None:
    import pathlib

    for path in pathlib.Path(proxy.__file__).parent.rglob("*.py"):
        source = path.read_text()
        for forbidden in ("slack", "import rq", "from rq", "boto3", "botocore"):
            assert forbidden not in source.lower(), f"{path.name} mentions {forbidden}"
