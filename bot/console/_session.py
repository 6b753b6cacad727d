"""The console's lines: what each one does, and when it has failed.

    /vdr …                 the slash command, as the acting person, in the channel
    press REF [in TEXT]    click a button or pick a menu option: [number] or label
    set FIELD VALUE        fill a field of the open modal: (number) or label
    check|uncheck FIELD [OPTION]
    submit · close         submit or close the open modal
    home                   open the App Home tab
    as NAME                act as someone else from now on
    in #CHANNEL            type into another channel from now on
    wait [SECONDS]         until no job runs and each report is in its thread
    expect TEXT            TEXT must show up (waits a little for it)
    try LINE               run LINE; its failure does not end a script
    sleep SECONDS · people · help · quit · # comment

A line fails when it cannot be carried out, when the app answers the request with an error
status or too late for Slack, when a Web API call the app made was refused, or when the app's
answer is a warning or an error. A script stops at the first failed line.
"""

from __future__ import annotations

import shlex
import textwrap
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.text import Text

from bot.console._controls import Control, fold
from bot.console._mrkdwn import to_text, visible
from bot.console._render import chosen_values, option_values
from bot.console._screen import Screen
from bot.console._workspace import CHANNEL_ID, DEFAULT_PERSON, Workspace
from bot.console.errors import (
    BotComplained,
    ConsoleError,
    DeliveryFailed,
    SlackCallFailed,
    WaitTimedOut,
)
from bot.fake_slack import Delivery, DeliveryError, View


@dataclass
class Timing:
    """How long the console waits for the app; tests shorten these."""

    quiet_s: float = 0.2
    """The app is done with a line once nothing happened for this long and no listener runs."""
    line_timeout_s: float = 30.0
    """A line's answer is awaited this long at most (later changes still show)."""
    expect_timeout_s: float = 10.0
    wait_timeout_s: float = 600.0
    poll_s: float = 0.03


class Session:
    """Runs console lines as one person at a time, against one workspace."""

    def __init__(self, workspace: Workspace, out: Console, *, person: str = DEFAULT_PERSON,
                 channel: str = CHANNEL_ID, timing: Timing | None = None,
                 confirm: Callable[[str], bool] | None = None) -> None:
        self.workspace = workspace
        self.fake = workspace.fake
        self.screen = Screen(workspace, out)
        self.timing = timing or Timing()
        self.user, self.user_name = workspace.person(person)
        self.screen.viewer = self.user
        self.channel = workspace.channel(channel)
        self.confirm = confirm
        self.stopped = False
        self._mark = 0
        """Where the last line that talked to the app began: `expect` looks from there."""
        self._jobs_since = datetime.now(UTC)

    @property
    def prompt(self) -> str:
        return f"{self.user_name} #{self.workspace.name_of(self.channel)} › "

    # -- running lines -----------------------------------------------------------------------

    def run_script(self, lines: Iterable[str], *, echo: bool = True) -> int:
        """Run `lines` in order; 0 when all succeed, 1 at the first that fails."""
        for number, line in enumerate(lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if echo:
                self.screen.say(Text.assemble((self.prompt, "bold green"), line.strip()))
            try:
                self.execute(line)
            except ConsoleError as error:
                self.screen.say(Text.assemble(f"✗ line {number} failed: ", error.as_text(),
                                              style="bold red"))
                return 1
            if self.stopped:
                break
        return 0

    def execute(self, line: str) -> None:
        """Carry out one line; raises ConsoleError (or a subclass) when it fails."""
        text = line.strip()
        if not text or text.startswith("#"):
            return
        if text.startswith("/"):
            self._command(text)
            return
        verb, _, rest = text.partition(" ")
        handler = self._verbs().get(verb.lower())
        if handler is None and verb.isdigit():
            handler, rest = self._press, text
        if handler is None:
            raise ConsoleError(f"unknown line {text!r}; type `help` for what the console takes")
        handler(rest.strip())

    def _verbs(self) -> dict[str, Callable[[str], None]]:
        return {
            "press": self._press, "click": self._press, "choose": self._press,
            "set": self._set, "check": self._check, "uncheck": self._uncheck,
            "submit": self._submit, "close": self._close, "home": self._home,
            "as": self._as, "in": self._in, "wait": self._wait, "expect": self._expect,
            "sleep": self._sleep, "people": self._people, "help": self._help,
            "quit": self._quit, "exit": self._quit, "try": self._try,
        }

    # -- talking to the app --------------------------------------------------------------------

    def _command(self, text: str) -> None:
        command, _, rest = text.partition(" ")
        self._talk(lambda: self.fake.command(rest.strip(), user=self.user,
                                             channel=self.channel, command=command))

    def _talk(self, send: Callable[[], Delivery]) -> Delivery:
        """Send one delivery, draw the app's answer, and fail the line if it went wrong."""
        self._mark = mark = self.screen.mark()
        calls_seen = len(self.fake.calls())
        try:
            delivery = send()
        except DeliveryError as error:
            raise ConsoleError(str(error)) from error
        self._settle(time.monotonic())
        self._check_delivery(delivery)
        self._check_outcome(mark, calls_seen)
        return delivery

    def _settle(self, started: float, quiet_s: float | None = None) -> None:
        """Draw changes until the app has finished answering (or the line times out)."""
        quiet_s = self.timing.quiet_s if quiet_s is None else quiet_s
        last_change, last = time.monotonic(), self._activity()
        while True:
            self.screen.refresh()
            now, activity = time.monotonic(), self._activity()
            if activity != last:
                last_change, last = now, activity
            busy = self.workspace.listeners.busy
            if not busy and now - last_change >= quiet_s:
                return
            if now - started > self.timing.line_timeout_s:
                self.screen.say("(the app is still busy; what it does next shows as it comes)",
                                "dim")
                return
            time.sleep(self.timing.poll_s)

    def _activity(self) -> tuple[int, int]:
        store = self.fake.store
        with store.lock:
            return len(store.calls), len(store.messages)

    def _check_delivery(self, delivery: Delivery) -> None:
        if delivery.status != 200:
            raise DeliveryFailed(f"the app answered {delivery.status}: "
                                 f"{delivery.response_text[:200]!r}")
        if delivery.late:
            raise DeliveryFailed(f"the app took {delivery.elapsed_s:.1f}s to acknowledge; "
                                 "Slack would have shown the user an error after 3s")

    def _check_outcome(self, mark: int, calls_seen: int) -> None:
        """Fail when, since `mark` and `calls_seen`, Slack refused a call or the app complained."""
        refused = [c for c in self.fake.calls()[calls_seen:] if not c.ok]
        if refused:
            call = refused[0]
            raise SlackCallFailed(f"Slack refused the app's {call.method}: {call.error}")
        complaints = [s.complaint for s in self.screen.since(mark) if s.complaint]
        if complaints:
            said = Text.assemble("the app answered: ", complaints[0])
            raise BotComplained(said.plain, shown=said)

    # -- buttons and menus -----------------------------------------------------------------------

    def _press(self, rest: str) -> None:
        ref, within = _split_within(rest)
        if not ref:
            raise ConsoleError("press what? `press 3`, `press Export…` or `press Export in Falcon`")
        control = self.screen.controls.find(ref, within=within)
        if control.url:
            self.screen.say(visible(f"(opens {control.url} in a browser)"), "dim")
        if control.confirm and not self._confirmed(control):
            self.screen.say("(not confirmed; nothing sent)", "dim")
            return
        if control.place.is_view:
            view_id = control.place.view_id or ""
            values = self.screen.drafts.get(view_id, {})
            self._talk(lambda: self.fake.click_view(view_id, control.action_id, user=self.user,
                                                    value=control.value, values=values))
        else:
            channel, ts = control.place.channel or "", control.place.ts or ""
            self._talk(lambda: self.fake.click(channel, ts, control.action_id, user=self.user,
                                               value=control.value))

    def _confirmed(self, control: Control) -> bool:
        dialog = control.confirm or {}
        title = (dialog.get("title") or {}).get("text") or "Are you sure?"
        body = (dialog.get("text") or {}).get("text") or ""
        self.screen.say(Text.assemble(("? ", "bold yellow"), (visible(title), "bold"), " ",
                                      to_text(body, self.workspace.name_of)))
        if self.confirm is None:
            self.screen.say("(confirmed)", "dim")
            return True
        return self.confirm(f"{(dialog.get('confirm') or {}).get('text') or 'Confirm'}? [y/N] ")

    # -- modal forms -----------------------------------------------------------------------------

    def _open_modal(self) -> View:
        view = self.fake.open_modal(self.user)
        if view is None:
            raise ConsoleError(f"{self.user_name} has no modal open")
        return view

    def _field(self, view: View, ref: str) -> dict[str, Any]:
        """The input block of the open modal that `ref` names: (number), label or block id."""
        inputs = [b for b in view.body.get("blocks") or [] if b.get("type") == "input"]
        bare = ref.strip().strip("()[]")
        if bare.isdigit():
            control = self.screen.controls.get(int(bare))
            if control.kind != "field" or control.place.view_id != view.id:
                raise ConsoleError(f"({bare}) is not a field of the open modal")
            found = [b for b in inputs if b.get("element") is control.element or
                     (b.get("element") or {}).get("action_id") == control.action_id]
        else:
            wanted = fold(ref)
            found = [b for b in inputs if fold(_label(b)) == wanted or b.get("block_id") == ref]
            found = found or [b for b in inputs if fold(_label(b)).startswith(wanted)]
        if len(found) != 1:
            labels = ", ".join(repr(_label(b)) for b in inputs)
            raise ConsoleError(f"no single field {ref!r} in the open modal; fields: {labels}")
        return found[0]

    def _set(self, rest: str) -> None:
        view = self._open_modal()
        ref, value = _split_field(rest)
        element = self._field(view, ref).get("element") or {}
        kind = element.get("type")
        if kind in ("checkboxes", "multi_static_select"):
            entered: Any = [_option(element, v) for v in value.split(",") if v.strip()]
        elif kind in ("static_select", "radio_buttons"):
            entered = _option(element, value)
        elif kind in ("users_select", "multi_users_select"):
            ids = [self.workspace.person(v)[0] for v in value.split(",") if v.strip()]
            entered = ids[0] if kind == "users_select" and ids else ids
        else:
            entered = value
        self._draft(view)[str(element.get("action_id"))] = entered
        self.screen.draw_view(view)

    def _check(self, rest: str, on: bool = True) -> None:
        view = self._open_modal()
        ref, option = _split_field(rest, value_required=False)
        element = self._field(view, ref).get("element") or {}
        if element.get("type") not in ("checkboxes", "multi_static_select"):
            raise ConsoleError(f"{ref!r} is not a set of checkboxes; use `set`")
        options = option_values(element)
        if not option and len(options) != 1:
            raise ConsoleError(f"which option of {ref!r}? {', '.join(o[1] for o in options)}")
        value = _option(element, option) if option else options[0][0]
        action_id = str(element.get("action_id"))
        chosen = chosen_values(element, self._draft(view).get(action_id))
        chosen = [v for v in chosen if v != value] + ([value] if on else [])
        self._draft(view)[action_id] = chosen
        self.screen.draw_view(view)

    def _uncheck(self, rest: str) -> None:
        self._check(rest, on=False)

    def _draft(self, view: View) -> dict[str, Any]:
        return self.screen.drafts.setdefault(view.id, {})

    def _submit(self, rest: str) -> None:
        view = self._open_modal()
        values = dict(self.screen.drafts.get(view.id, {}))
        delivery = self._talk(lambda: self.fake.submit(view.id, user=self.user, values=values))
        answer = _json(delivery)
        if answer.get("response_action") == "errors":
            self.screen.errors[view.id] = dict(answer.get("errors") or {})
            self.screen.draw_view(view)
            raise BotComplained("the form was refused: " + "; ".join(
                f"{k}: {v}" for k, v in self.screen.errors[view.id].items()))
        self.screen.errors.pop(view.id, None)

    def _close(self, rest: str) -> None:
        view = self._open_modal()
        store = self.fake.store
        # Closing a modal happens in Slack's client; Slack tells the app only when the modal
        # asked (notify_on_close), and the fake has no such delivery.
        if view.body.get("notify_on_close"):
            self.screen.say("(this modal asked to hear of its closing; the app is not told here)",
                            "yellow")
        with store.lock:
            for stacked in store.views.values():
                if stacked.root_view_id == view.root_view_id:
                    stacked.closed = True
        self.screen.refresh()

    # -- App Home, people, channels --------------------------------------------------------------

    def _home(self, rest: str) -> None:
        self._talk(lambda: self.fake.open_home(self.user))
        home = self.fake.home(self.user)
        if home is None:
            raise ConsoleError("the app published no App Home for this person")
        already = self.screen.since(self._mark)
        if not any("App Home of" in shown.text for shown in already if shown.from_app):
            self.screen.draw_view(home)

    def _as(self, rest: str) -> None:
        if not rest:
            raise ConsoleError("as whom? e.g. `as cleo`")
        known = rest.strip().lstrip("@").casefold() in [n.casefold() for n in
                                                        self.workspace.names()]
        self.user, self.user_name = self.workspace.person(rest, create=True)
        self.screen.viewer = self.user
        joined = "" if known else " (new here, with no role)"
        self.screen.say(f"— you are now {self.user_name}{joined}", "bold blue")

    def _in(self, rest: str) -> None:
        self.channel = self.workspace.channel(rest)
        self.screen.say(f"— now typing in #{self.workspace.name_of(self.channel)}", "bold blue")

    def _people(self, rest: str) -> None:
        roles = self.workspace.deps.roles
        for name in self.workspace.names():
            user_id, _ = self.workspace.person(name)
            role = roles.role_of(user_id).label
            you = "  ← you" if user_id == self.user else ""
            self.screen.say(f"  {name:<10} {user_id:<12} {role}{you}")

    # -- waiting and checking --------------------------------------------------------------------

    def _wait(self, rest: str) -> None:
        """Until no job started here is queued or running, and each one's report is posted.

        Jobs whose messages are not in this workspace (queued from the command line, or by an
        earlier console whose worker resumes them) are not waited for: nobody here sees them.
        """
        timeout = _seconds(rest, self.timing.wait_timeout_s)
        started, mark, calls_seen = time.monotonic(), self.screen.mark(), len(self.fake.calls())
        self.screen.say("… waiting for jobs to finish", "dim")
        while not self._jobs_done():
            self.screen.refresh()
            if time.monotonic() - started > timeout:
                raise WaitTimedOut(f"jobs still running after {timeout:g}s")
            time.sleep(0.1)
        self._settle(time.monotonic(), quiet_s=max(self.timing.quiet_s, 0.5))
        self._jobs_since = datetime.now(UTC)
        self._check_outcome(mark, calls_seen)

    def _jobs_done(self) -> bool:
        from jobs import api as jobs_api

        engine = self.workspace.engine
        active = jobs_api.list_jobs(engine=engine, active_only=True, limit=100)
        if any(self._job_message(job) for job in active):
            return False
        recent = jobs_api.list_jobs(engine=engine, active_only=False, limit=50)
        return all(self._report_posted(job) for job in recent
                   if job.finished_at is not None and job.finished_at >= self._jobs_since)

    def _job_message(self, job: Any) -> tuple[str, str] | None:
        """(channel, ts) of the job's message when it is in this workspace."""
        origin = job.origin or {}
        channel, ts = str(origin.get("channel") or ""), str(origin.get("ts") or "")
        if channel and ts and self.fake.message(channel, ts) is not None:
            return channel, ts
        return None

    def _report_posted(self, job: Any) -> bool:
        where = self._job_message(job)
        if where is None:
            return True
        channel, ts = where
        message = self.fake.message(channel, ts)
        root = (message.thread_ts if message else None) or ts  # a job may live in a thread
        finished = job.finished_at.timestamp()
        replies = self.fake.thread(channel, root)
        return any(float(reply.ts) >= finished and reply.ts != ts for reply in replies)

    def _expect(self, rest: str) -> None:
        if not rest:
            raise ConsoleError("expect what? e.g. `expect Succeeded`")
        wanted = fold(rest)
        deadline = time.monotonic() + self.timing.expect_timeout_s
        while True:
            self.screen.refresh()
            shown = " ".join(fold(s.text) for s in self.screen.since(self._mark) if s.from_app)
            if wanted in shown:
                self.screen.say(f"✓ saw “{rest}”", "green")
                return
            if time.monotonic() > deadline:
                raise WaitTimedOut(f"“{rest}” did not show up within "
                                   f"{self.timing.expect_timeout_s:g}s")
            time.sleep(0.1)

    def _sleep(self, rest: str) -> None:
        end = time.monotonic() + _seconds(rest, 1.0)
        while time.monotonic() < end:
            self.screen.refresh()
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))

    def _try(self, rest: str) -> None:
        try:
            self.execute(rest)
        except ConsoleError as error:
            self.screen.say(Text.assemble("(failed, as allowed: ", error.as_text(), ")",
                                          style="yellow"))

    def _help(self, rest: str) -> None:
        lines = textwrap.dedent(__doc__.split("\n\n")[1]) if __doc__ else ""
        self.screen.say(textwrap.indent(lines, "  "), "cyan")

    def _quit(self, rest: str) -> None:
        self.stopped = True


def _split_within(rest: str) -> tuple[str, str | None]:
    """`Export… in Falcon` → ("Export…", "Falcon"); a quoted label may hold " in " itself."""
    rest = rest.strip()
    if rest[:1] in ("'", '"') and rest.find(rest[0], 1) > 0:
        end = rest.find(rest[0], 1)
        label, after = rest[1:end], rest[end + 1:].strip()
        if not after:
            return label, None
        if after.startswith("in ") and after[3:].strip():
            return label, _unquote(after[3:])
        raise ConsoleError(f"cannot read {rest!r}: only `in TEXT` may follow a quoted label")
    head, sep, tail = rest.partition(" in ")  # labels are short; the row's text may say "in"
    if sep and head.strip() and tail.strip():
        return _unquote(head), _unquote(tail)
    return _unquote(rest), None


def _split_field(rest: str, *, value_required: bool = True) -> tuple[str, str]:
    """`"S3 prefix" deals/x`, `S3 prefix = deals/x` or `6 deals/x` → (field, value)."""
    if " = " in rest:
        field, _, value = rest.partition(" = ")
        return _unquote(field), value.strip()
    try:
        words = shlex.split(rest)
    except ValueError as error:
        raise ConsoleError(f"cannot read {rest!r}: {error}") from error
    if not words or (value_required and len(words) < 2):
        raise ConsoleError("give a field and a value, e.g. `set 4 deals/falcon` or "
                           "`set \"S3 prefix\" = deals/falcon`")
    return words[0], " ".join(words[1:])


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _label(block: dict[str, Any]) -> str:
    return str((block.get("label") or {}).get("text") or block.get("block_id") or "")


def _option(element: dict[str, Any], wanted: str) -> str:
    """The value of the option of `element` whose value or label is `wanted`."""
    options = option_values(element)
    key = fold(wanted)
    for value, label in options:
        if key in (fold(value), fold(label)):
            return value
    starts = [value for value, label in options if fold(label).startswith(key)]
    if len(starts) == 1:
        return starts[0]
    raise ConsoleError(f"no option {wanted!r}; options: {', '.join(o[1] for o in options)}")


def _seconds(text: str, default: float) -> float:
    if not text.strip():
        return default
    try:
        return float(text.strip().rstrip("s"))
    except ValueError as error:
        raise ConsoleError(f"{text!r} is not a number of seconds") from error


def _json(delivery: Delivery) -> dict[str, Any]:
    try:
        answer = delivery.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}
