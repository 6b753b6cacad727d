"""The public surface of vdr_client is exactly what `__all__` says."""

from __future__ import annotations

import inspect

import vdr_client
from vdr_client import VdrClient


def test_every_name_in_all_is_importable() -> None:
    missing = [name for name in vdr_client.__all__ if not hasattr(vdr_client, name)]

    assert missing == []


def test_no_public_name_is_left_out_of_all() -> None:
    public = {
        name for name, value in vars(vdr_client).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }

    assert public == set(vdr_client.__all__)


def test_the_contract_names_are_exported() -> None:
    for name in ("VdrClient", "RetryPolicy", "RetryEvent", "AmbiguousRoom", "VdrError"):
        assert name in vdr_client.__all__


def test_client_signature_matches_the_contract() -> None:
    params = inspect.signature(VdrClient.__init__).parameters

    assert list(params)[:3] == ["self", "base_url", "token"]
    for keyword in ("transport", "timeout_s", "retry", "on_retry", "max_connections"):
        assert params[keyword].kind is inspect.Parameter.KEYWORD_ONLY
    for method in ("capabilities", "search_rooms_page", "search_rooms", "get_room", "find_room",
                   "list_children", "iter_children", "download", "trash_room", "restore_room",
                   "purge_room", "trash_item", "purge_item", "get_operation", "wait_operation",
                   "from_settings", "close"):
        assert callable(getattr(VdrClient, method)), method


def test_retry_policy_defaults_match_the_contract() -> None:
    policy = vdr_client.RetryPolicy()

    assert (policy.attempts, policy.base_delay_s, policy.max_delay_s, policy.deadline_s) == (
        8, 0.2, 30.0, 600.0
    )
