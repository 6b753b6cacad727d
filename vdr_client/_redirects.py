"""Where a content redirect may send us.

A backend may answer a content request with 302 to a pre-signed URL on its storage. We follow
only to hosts it declares in `capabilities().download_hosts`, and never to link-local or cloud
metadata addresses even when declared: a compromised or confused backend must not be able to
point our process at the instance's credentials endpoint. Hostnames are resolved and every
address checked; the connection itself resolves again, so a DNS answer that changes within
milliseconds could still slip through, which is why the declared-host list comes first.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable

import httpx

from vdr_client._errors import UnsafeRedirect

Resolver = Callable[[str, int], list[str]]

_LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task credentials
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (classic)
    )
)
_METADATA_HOSTNAMES = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
     "instance-data.ec2.internal"}
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def resolve_host(host: str, port: int) -> list[str]:
    """Addresses a hostname resolves to; empty when it does not resolve (the connect will fail)."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return [str(info[4][0]) for info in infos]


def check_redirect(
    current: httpx.URL, location: str, allowed_hosts: Iterable[str], resolve: Resolver
) -> httpx.URL:
    """The absolute URL a redirect points to, or UnsafeRedirect if we must not go there."""
    target = current.join(location)
    shown = f"{target.scheme}://{target.host}:{_port(target)}"
    if target.scheme not in _DEFAULT_PORTS:
        raise UnsafeRedirect(f"content redirect to a {target.scheme!r} URL refused")
    if current.scheme == "https" and target.scheme == "http":
        raise UnsafeRedirect(f"content redirect from https down to http refused ({shown})")
    if _is_forbidden_name(target.host):
        raise UnsafeRedirect(f"content redirect to a metadata host refused ({shown})")
    if not any(_host_matches(target, entry) for entry in allowed_hosts):
        raise UnsafeRedirect(
            f"content redirect to {shown} refused: not among the backend's download hosts"
        )
    for address in _addresses(target, resolve):
        if _is_forbidden_address(address):
            raise UnsafeRedirect(
                f"content redirect to {shown} refused: it resolves to {address}, a link-local or "
                "metadata address"
            )
    return target


def _port(url: httpx.URL) -> int:
    return url.port or _DEFAULT_PORTS.get(url.scheme, 0)


def _host_matches(url: httpx.URL, entry: str) -> bool:
    """`entry` is "host", "host:port", "[v6]:port" or "*.domain"; no port means the default."""
    host, port = _split_entry(entry.strip().lower())
    if port is None:
        port = _DEFAULT_PORTS[url.scheme]
    if port != _port(url):
        return False
    target = url.host.lower().rstrip(".")
    if host.startswith("*."):
        return target.endswith(host[1:]) and len(target) > len(host) - 1
    return target == host.rstrip(".")


def _split_entry(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, int(port)
    return entry, None


def _is_forbidden_name(host: str) -> bool:
    return host.lower().rstrip(".") in _METADATA_HOSTNAMES


def _addresses(url: httpx.URL, resolve: Resolver) -> list[str]:
    host = url.host
    try:
        ipaddress.ip_address(host.split("%")[0])
        return [host]
    except ValueError:
        return resolve(host, _port(url))


def _is_forbidden_address(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in _METADATA_ADDRESSES:
        return True
    return any(address in network for network in _LINK_LOCAL)
