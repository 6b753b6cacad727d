"""The bot package's public surface is what its `__all__` says, and nothing breaks importing it."""

from __future__ import annotations

import bot
import bot.fake_slack


def test_every_public_name_resolves_and_is_listed_once() -> None:
    for package in (bot, bot.fake_slack):
        assert sorted(set(package.__all__)) == sorted(package.__all__)
        for name in package.__all__:
            assert getattr(package, name) is not None, name


def test_the_surface_is_the_documented_one() -> None:
    assert set(bot.__all__) == {
        "BotError", "BotServer", "Command", "Deps", "InvalidInput", "JobWatcher",
        "PermissionDenied", "Role", "Roles", "asgi_app", "create_app", "parse_command",
    }
    assert {"FakeSlack", "Delivery", "DeliveryError"} <= set(bot.fake_slack.__all__)


def test_errors_form_one_tree() -> None:
    assert issubclass(bot.PermissionDenied, bot.BotError)
    assert issubclass(bot.InvalidInput, bot.BotError)
