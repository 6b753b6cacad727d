"""app_manifest.yaml: valid against Slack's published manifest schema, and complete for the app."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bot.grammar import COMMAND

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path("/work/shared/specs/slack-app-manifest.schema.json")

SCOPE_OF_METHOD = {
    "chat.postMessage": "chat:write", "chat.update": "chat:write", "chat.delete": "chat:write",
    "chat.postEphemeral": "chat:write", "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write", "users.info": "users:read",
    "usergroups.users.list": "usergroups:read",
}
"""Web API methods the app calls that need a scope (views.* and auth.test need none)."""


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "app_manifest.yaml").read_text())
    return loaded


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    if not SCHEMA.exists():
        pytest.skip(f"{SCHEMA} is not on this machine")
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_manifest_validates_against_slacks_schema(manifest: dict[str, Any],
                                                  validator: jsonschema.Draft7Validator) -> None:
    assert [e.message for e in validator.iter_errors(manifest)] == []


def test_http_mode_variant_from_the_docs_validates(manifest: dict[str, Any],
                                                   validator: jsonschema.Draft7Validator) -> None:
    url = "https://vdr.example.com/slack/events"
    http = copy.deepcopy(manifest)
    http["settings"]["socket_mode_enabled"] = False
    http["settings"]["interactivity"]["request_url"] = url
    http["settings"]["event_subscriptions"]["request_url"] = url
    http["features"]["slash_commands"][0]["url"] = url
    assert [e.message for e in validator.iter_errors(http)] == []


def test_schema_catches_a_broken_manifest(manifest: dict[str, Any],
                                          validator: jsonschema.Draft7Validator) -> None:
    broken = copy.deepcopy(manifest)
    broken["features"]["slash_commands"][0]["command"] = "vdr"  # no leading slash
    broken["display_information"]["name"] = "x" * 36
    assert len(list(validator.iter_errors(broken))) == 2


def test_manifest_has_what_the_app_listens_for(manifest: dict[str, Any]) -> None:
    commands = [c["command"] for c in manifest["features"]["slash_commands"]]
    assert commands == ["/vdr"] and COMMAND.match(commands[0])
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert "app_home_opened" in manifest["settings"]["event_subscriptions"]["bot_events"]
    assert manifest["settings"]["socket_mode_enabled"] is True


def test_bot_scopes_cover_every_method_the_app_calls(manifest: dict[str, Any]) -> None:
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"commands", "chat:write.public"} <= scopes
    assert set(SCOPE_OF_METHOD.values()) <= scopes
