"""`vdr demo` and `vdr console` as a newcomer runs them: real commands, driven by scripts.

Each test runs the command in a fresh working folder with only the environment a new user has
(Redis in this area's test database, or none at all), then looks at the files it exported and
at the processes it left behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import pytest

VDR = Path(sys.executable).parent / "vdr"
REPO = Path(__file__).resolve().parents[2]
STDLIB = Path(sysconfig.get_paths()["stdlib"])
STDLIB_ROOMS = ("email", "json", "wsgiref")
"""Folders of Python's own standard library served as rooms; `email` is the one exported."""


def demo_env(redis_url: str | None) -> dict[str, str]:
    """What a new user's shell has: no vdr-ops settings; REDIS_URL only when given."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VDR_", "REDIS_URL", "DATABASE_URL", "EXPORT_ROOT", "SLACK_"))}
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    else:
        env["REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens there
    return env


def run_demo(cwd: Path, env: dict[str, str], *args: str,
             timeout_s: float = 50.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VDR), "demo", *args], cwd=cwd, env=env, text=True,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s)


def link_tree(source: Path, target: Path) -> None:
    """A copy of `source` made of hard links where the file system allows (no bytes copied).

    The directory backend serves no symbolic link that leaves its room, and writes its state
    into the root it serves, so the rooms are a tree of our own pointing at the same files.
    """
    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link, symlinks=False)


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def test_demo_exports_the_python_standard_library_byte_for_byte(tmp_path: Path,
                                                                redis_url: str) -> None:
    rooms = tmp_path / "rooms"
    for name in STDLIB_ROOMS:
        link_tree(STDLIB / name, rooms / name)
    script = tmp_path / "stdlib.vdr"
    script.write_text("/vdr search\n/vdr export email\ncheck Confirm\nsubmit\nwait\n"
                      "expect Succeeded\n/vdr reports email\nexpect email\n")

    done = run_demo(tmp_path, demo_env(redis_url), "--root", str(rooms), "--script", str(script))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Redis at redis://127.0.0.1:6379" in done.stdout
    [exported] = [p for p in (tmp_path / "exports").iterdir() if p.is_dir()]
    assert exported.name.startswith("email [")
    copy = files_under(exported)
    manifest = copy.pop("manifest.jsonl")
    original = files_under(rooms / "email")
    assert len(original) > 20
    assert copy == original
    assert files_under(STDLIB / "email").items() >= {  # the rooms are the library's own files
        k: v for k, v in original.items() if not k.startswith("__pycache__")}.items()
    assert manifest.count(b"\n") == len(original)


def test_demo_without_any_redis_runs_the_first_look_on_fakeredis(tmp_path: Path) -> None:
    assert "--script examples/first-look.vdr" in (REPO / "scripts" / "demo").read_text()
    env = demo_env(None)
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'production.db'}"  # never the demo's
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not (Path(p) / "redis-server").exists())

    done = run_demo(tmp_path, env, "--script", str(REPO / "examples" / "first-look.vdr"))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "fakeredis" in done.stdout and "a worker thread in this process" in done.stdout
    assert "✓ saw “Succeeded”" in done.stdout and "Export report" in done.stdout
    [exported] = (tmp_path / "exports").iterdir()
    assert len([p for p in exported.rglob("*") if p.is_file()]) == 120 + 1  # files, manifest
    assert (tmp_path / ".vdr-demo" / "vdr.db").is_file()
    assert not (tmp_path / "production.db").exists()


@pytest.mark.parametrize(("url", "local"), [
    ("redis://127.0.0.1:6379/0", True), ("redis://localhost/1", True),
    ("redis://[::1]:6379", True), ("unix:///run/redis.sock", True),
    ("redis://:secret@127.0.0.1:6379", True), ("redis://cache.internal:6379", False),
    ("rediss://10.0.0.5:6380/0", False),
])
def test_the_demo_takes_only_a_redis_on_this_machine_by_itself(url: str, local: bool) -> None:
    from vdr_ops.demo import _is_local

    assert _is_local(url) is local


def test_demo_with_an_s3_bucket_exports_to_disk_and_s3(tmp_path: Path, s3_env: str) -> None:
    import boto3

    script = tmp_path / "both.vdr"
    script.write_text("/vdr export falcon\ncheck Confirm\nsubmit\nwait\nexpect Succeeded\n")

    done = run_demo(tmp_path, demo_env(None), "--redis", "fake", "--s3-bucket", s3_env,
                    "--script", str(script))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Amazon S3" in done.stdout  # offered, and ticked by default
    listed = boto3.client("s3").list_objects_v2(Bucket=s3_env, Prefix="vdr-demo/")
    keys = [item["Key"] for item in listed.get("Contents", [])]
    assert len(keys) == 120 + 1 and any(key.endswith("/manifest.jsonl") for key in keys)
    [exported] = (tmp_path / "exports").iterdir()
    assert len([p for p in exported.rglob("*") if p.is_file()]) == 120 + 1


def children_of(pid: int) -> dict[int, str]:
    """Live processes whose parent is `pid`: {pid: command name}."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, _, rest = stat.rpartition(")")
        if int(rest.split()[1]) == pid:
            found[int(entry.name)] = name.split("(", 1)[1]
    return found


def descendants_of(pid: int) -> dict[int, str]:
    """Children, grandchildren ... of `pid` (RQ's worker forks its scheduler, for one)."""
    found = children_of(pid)
    for child in list(found):
        found.update(descendants_of(child))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
@pytest.mark.parametrize("sigint_on_entry", ["default", "ignored"])
def test_ctrl_c_stops_the_demo_and_every_process_it_started(tmp_path: Path,
                                                            sigint_on_entry: str) -> None:
    """"ignored": how a shell starts a background job (CI runners), which Python keeps."""
    script = tmp_path / "idle.vdr"
    script.write_text("/vdr search falcon\nsleep 60\n")

    def entry_state() -> None:
        if sigint_on_entry == "ignored":
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    demo = subprocess.Popen([str(VDR), "demo", "--redis", "server", "--script", str(script)],
                            cwd=tmp_path, env=demo_env(None), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=entry_state)
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            if "sleep 60" in line:
                break
        assert sorted(children_of(demo.pid).values()) == ["redis-server", "vdr"]
        children = descendants_of(demo.pid)
        assert (tmp_path / ".vdr-demo" / "redis.log").is_file()  # the demo's own redis-server

        demo.send_signal(signal.SIGINT)
        started = time.monotonic()
        code = demo.wait(timeout=20)
        stopped_s = time.monotonic() - started
    finally:
        if demo.poll() is None:
            demo.kill()

    assert code == 130
    assert stopped_s < 15
    assert not [pid for pid in children if alive(pid)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs prctl and /proc")
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_children_die_with_the_demo_even_when_it_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "idle.vdr"
    script.write_text("sleep 60\n")
    demo = subprocess.Popen([str(VDR), "demo", "--redis", "server", "--script", str(script)],
                            cwd=tmp_path, env=demo_env(None), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert demo.stdout is not None
    for line in demo.stdout:
        if "sleep 60" in line:
            break
    assert len(children_of(demo.pid)) == 2
    children = descendants_of(demo.pid)

    demo.kill()
    demo.wait(timeout=10)
    deadline = time.monotonic() + 15
    while [pid for pid in children if alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)

    assert not [pid for pid in children if alive(pid)]


def test_vdr_console_reads_a_script_from_standard_input(tmp_path: Path, redis_url: str,
                                                        make_proxy: Any) -> None:
    from proxy import RoomSpec, SyntheticBackend

    proxy = make_proxy(SyntheticBackend(seed=5, rooms=0, specs=[RoomSpec("Project Osprey",
                                                                         files=3)]))
    env = demo_env(redis_url)
    env.update(VDR_API_URL=proxy.url, DATABASE_URL=f"sqlite:///{tmp_path / 'console.db'}")
    lines = "/vdr search osprey\nexpect Project Osprey\n/vdr show no-such-room\n/vdr help\n"

    done = subprocess.run([str(VDR), "console", "--grant-roles", "--as", "cleo"], input=lines,
                          cwd=tmp_path, env=env, text=True, capture_output=True, timeout=50)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "cleo #deal-ops › /vdr search osprey" in done.stdout
    assert "✓ saw “Project Osprey”" in done.stdout
    assert "✗ line 3 failed: the app answered: ⚠ No room matches" in done.stdout
    assert "/vdr help [command]" not in done.stdout


def test_the_demo_prints_folder_names_as_they_are_not_as_markup_or_escapes() -> None:
    import io

    import sqlalchemy as sa
    from rich.console import Console

    from vdr_ops.demo import _say_what_runs

    out = io.StringIO()
    terminal = Console(file=out, width=200, force_terminal=True, color_system="truecolor",
                       highlight=False)  # as the demo draws
    root = Path("/rooms/[bold red]deals[/]\x1b[2Jnew\nline")

    _say_what_runs(terminal, root, "http://127.0.0.1:1", "fakeredis", "a thread",
                   sa.create_engine("sqlite://"))

    drawn = out.getvalue()
    assert "[bold red]deals[/]␛[2Jnew␊line" in drawn
    assert "\x1b[2J" not in drawn
