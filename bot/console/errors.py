"""Why a console line failed. A script stops at the first failed line and exits non-zero.

    ConsoleError            the line could not be carried out (unknown command, no such control)
    ├── DeliveryFailed      the app refused or missed the request (not 200, or acked too late)
    ├── BotComplained       the app answered with a warning or an error message
    ├── SlackCallFailed     the app made a Web API call that Slack refused (e.g. invalid_blocks)
    └── WaitTimedOut        `wait` or `expect` gave up
"""

from __future__ import annotations

from rich.text import Text


class ConsoleError(Exception):
    """A console line failed; the message says what went wrong and what to try.

    `shown` is the message as drawn, when it quotes the app (its bold, its @mentions).
    """

    def __init__(self, message: str, *, shown: Text | None = None) -> None:
        super().__init__(message)
        self.shown = shown

    def as_text(self) -> Text:
        """The message for the terminal: never read as Rich markup."""
        return self.shown.copy() if self.shown is not None else Text(str(self))


class DeliveryFailed(ConsoleError):
    """The app answered a delivery with an error status, or later than Slack waits."""


class BotComplained(ConsoleError):
    """The app's answer to this line was a warning or an error."""


class SlackCallFailed(ConsoleError):
    """A Web API call the app made while handling this line was refused."""


class WaitTimedOut(ConsoleError):
    """What a line waited for did not happen in time."""
