"""Clients share one TLS context per trust setting: loading the CA bundle is slow."""

from __future__ import annotations

import ssl

import certifi
import pytest

from vdr_client import VdrClient


def _context_of(client: VdrClient) -> ssl.SSLContext:
    context: ssl.SSLContext = client._http._transport._pool._ssl_context  # type: ignore[attr-defined]
    return context


def test_two_clients_share_one_context() -> None:
    with VdrClient("https://vdr.invalid") as first, VdrClient("https://vdr.invalid") as second:
        assert _context_of(first) is _context_of(second)
        assert _context_of(first).verify_mode is ssl.CERT_REQUIRED


def test_a_bundle_named_in_the_environment_gets_a_context_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with VdrClient("https://vdr.invalid") as default:
        monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
        with VdrClient("https://vdr.invalid") as named:
            assert _context_of(named) is not _context_of(default)
            assert _context_of(named).verify_mode is ssl.CERT_REQUIRED
