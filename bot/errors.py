"""The Slack app's one error hierarchy.

    BotError
    ├── PermissionDenied   the user's role does not allow the action; says which role would
    └── InvalidInput       a form field or command argument cannot be used; names the field

Errors from the libraries the app sits on are translated where they are caught:
`slack_sdk.errors.SlackApiError` in `bot.slack_calls` (logged, never raised into a job or a
handler's caller), `vdr_client.VdrError` in the flows (shown to the user as what to do next).
"""

from __future__ import annotations


class BotError(Exception):
    """Base of the app's own errors; the message is fit to show to the Slack user."""


class PermissionDenied(BotError):
    """The user lacks the role an action needs."""

    def __init__(self, user: str, needed: str) -> None:
        super().__init__(f"This needs the *{needed}* role, which <@{user}> does not have. "
                         "An admin can grant it with `/vdr settings`.")
        self.user = user
        self.needed = needed


class InvalidInput(BotError):
    """A value the user gave cannot be used; `field` is the form block or argument name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
