"""Export benchmarks: our exporter against s5cmd, rclone, tuned boto3 and a naive exporter.

    python bench/export.py [--quick] [--only small|latency|large|workers] [--repeat N]

Not a test: it prints figures measured in one run and the ratios the product promises
(issue 3), each PASS or MISS. Every ratio compares two runs against the same moto S3 server
(server mode, a process of its own) and, where a source is involved, the same synthetic room
served by `vdr proxy` over HTTP on 127.0.0.1. Our exporter runs as `api.run_export` in a child
process (bench/_one_export.py): the code path of `vdr export`, timed from inside, with its own
RSS high-water mark. Redis database 7 (or `VDR_BENCH_REDIS_URL`) is this benchmark's; it is
flushed before each scene.
The machine's load average is printed with every scene: ratios taken while other work runs
on the same cores are only as good as that number.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _baselines as base
import _stack as stack

MiB = 1024 * 1024
BUCKET = "vdr-bench"
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Sizes:
    small_files: int
    latency_files: int
    large_bytes: int
    flat_bytes: int  # a second, smaller large file: peak memory must not grow with size


FULL = Sizes(small_files=2000, latency_files=10_000, large_bytes=2048 * MiB, flat_bytes=256 * MiB)
QUICK = Sizes(small_files=500, latency_files=500, large_bytes=200 * MiB, flat_bytes=50 * MiB)

SMALL_SIZE = 4096
LATENCY_MS = 20.0
LATENCY_CONCURRENCY = 5
"""Downloads at once in the latency scene. The ideal it sets (5 every 20 ms: 250 files/s) asks
moto for about half of what it can store on two cores (~450 small objects/s at ~2.2 ms of its
CPU each, with nothing else running); at 16 the ideal (800 files/s) would be far beyond what
moto can take at all, and the scene would measure moto's CPU, which the small scene already
does, rather than how well the exporter hides the source's latency."""
WORKER_COUNTS = (1, 2, 4)
WORKER_SHARDS = 8
"""The worker scene's room is cut into this many shards, so four workers have two each."""

MEMORY_LIMIT_MIB = 300


# --- printing ---------------------------------------------------------------------------------


def say(text: str = "") -> None:
    print(text, flush=True)


def verdict(ratio: float, target: float, *, at_least: bool) -> str:
    ok = ratio >= target if at_least else ratio <= target
    sign = "≥" if at_least else "≤"
    return f"target {sign} {target:g}×  {'PASS' if ok else 'MISS'}"


def load_text() -> str:
    one, five, fifteen = stack.load_average()
    return f"load average {one} / {five} / {fifteen} (1/5/15 min, {os.cpu_count()} cores)"


def code_version() -> str:
    """The commit measured, and whether engine, proxy or client files differ from it (the
    tree is shared with colleagues: each scene says what its child processes imported)."""
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "?"
    dirty = subprocess.run(["git", "-C", str(HERE.parent), "status", "--porcelain", "--",
                            "jobs", "proxy", "vdr_client"], capture_output=True, text=True).stdout
    changed = len(dirty.splitlines())
    return f"commit {commit}" + (f" + {changed} uncommitted engine/proxy/client files"
                                 if changed else "")


# --- measuring --------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Usage:
    """CPU the servers spent during one measurement (where the time went, outside us)."""

    watched: dict[str, int]
    spent: dict[str, float] = field(default_factory=dict)


def settle() -> None:
    """Write back what earlier runs left dirty in the page cache, so that no run pays for the
    previous one's disk writes (our exports; moto's temp files where RAM cannot take them)."""
    os.sync()
    time.sleep(0.5)


@contextmanager
def servers_cpu(watched: dict[str, int]) -> Iterator[Usage]:
    settle()
    usage = Usage(watched)
    before = {name: cpu_seconds(pid) for name, pid in watched.items()}
    yield usage
    usage.spent = {name: cpu_seconds(pid) - before[name] for name, pid in watched.items()}


@dataclass
class Ctx:
    """What every scene shares: the moto server, the work folder, the options."""

    moto: stack.Service
    workdir: Path
    sizes: Sizes
    repeat: int
    profile_dir: Path | None
    s3: Any
    latency_ms: float
    latency_concurrency: int
    workers_latency_ms: float
    calm: float | None
    services: list[stack.Service] = field(default_factory=list)

    def proxy(self, rooms: list[str], latency_ms: float = 0.0) -> stack.Service:
        service = stack.start_proxy(self.workdir, rooms, latency_ms=latency_ms)
        self.services.append(service)
        return service

    def folder(self, *parts: str) -> Path:
        path = self.workdir.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path


def fresh_redis() -> None:
    from redis import Redis

    with Redis.from_url(stack.REDIS_URL) as redis:
        redis.flushdb()


def run_ours(ctx: Ctx, proxy: stack.Service, room: str, label: str,
             extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """One export by our engine in a child process; its JSON summary, checked for success."""
    fresh_redis()
    result = ctx.workdir / f"{label}.json"
    argv = [sys.executable, str(HERE / "_one_export.py"), room, "--to",
            str(ctx.folder("exports", label)), "--s3", f"s3://{BUCKET}/{label}", "--result",
            str(result)]
    if ctx.profile_dir is not None:
        argv = profiled(argv, ctx.profile_dir / f"{label}.speedscope.json")
    env = dict(os.environ, VDR_API_URL=proxy.url, **(extra_env or {}))
    log = ctx.workdir / f"{label}.log"
    with open(log, "wb") as sink:
        code = subprocess.run(argv, env=env, stdout=sink, stderr=subprocess.STDOUT).returncode
    if code != 0 or not result.exists():
        raise RuntimeError(f"our export {label} exited {code}; see {log}")
    summary: dict[str, Any] = json.loads(result.read_text())
    if summary["state"] != "succeeded" or summary["files_failed"]:
        raise RuntimeError(f"our export {label} did not succeed: {summary}")
    return summary


def profiled(argv: list[str], output: Path) -> list[str]:
    """The same command under py-spy (sampling only threads holding the GIL: CPU, not waits)."""
    py_spy = stack.bin_path("py-spy")
    if py_spy is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    output.parent.mkdir(parents=True, exist_ok=True)
    return [py_spy, "record", "--gil", "--nonblocking", "--rate", "50", "--format",
            "speedscope", "--output", str(output), "--", *argv]


def room_folder(exports: Path) -> Path:
    """The one room folder our export made under an export root."""
    (folder,) = [path for path in exports.iterdir() if path.is_dir()]
    return folder


# --- scene 1: many small files ----------------------------------------------------------------


@dataclass
class Run:
    """One measured run: wall clock, CPU of the tool itself, CPU of the servers meanwhile."""

    elapsed_s: float
    cpu_s: float
    servers: dict[str, float]

    def cpu_text(self, tool: str) -> str:
        parts = [f"{tool} {self.cpu_s:.1f}s"] + [f"{n} {s:.1f}s" for n, s in self.servers.items()]
        return "cpu: " + ", ".join(parts)

    def per_file_ms(self, tool: str, files: int) -> str:
        parts = {tool: self.cpu_s, **self.servers}
        terms = " + ".join(f"{name} {1000 * cpu / files:.2f}" for name, cpu in parts.items())
        return f"{terms} = {1000 * sum(parts.values()) / files:.2f} ms"


def scene_small(ctx: Ctx) -> None:
    count = ctx.sizes.small_files
    say(f"== many small files: {count:,} × {SMALL_SIZE // 1024} KiB; ours: proxy -> disk + S3, "
        "s5cmd and rclone: disk -> S3")
    say(f"   {load_text()}")
    proxy = ctx.proxy([f"bench-small:files={count}:size={SMALL_SIZE}"])
    watched = {"proxy": proxy.process.pid, "moto": ctx.moto.process.pid}
    runs: dict[str, list[Run]] = {"ours": [], "s5cmd": [], "rclone": []}
    source: Path | None = None
    for round_number in range(ctx.repeat):
        label = f"small-{round_number}"
        with servers_cpu(watched) as usage:
            ours = run_ours(ctx, proxy, "bench-small", label)
        run = Run(ours["elapsed_s"], ours["cpu_s"], usage.spent)
        runs["ours"].append(run)
        say(f"   ours   {run.elapsed_s:7.2f}s  {count / run.elapsed_s:7.1f} files/s  "
            f"{run.cpu_text('exporter')}")
        if source is None:
            source = disk_copy_of(ctx, label)
        for tool in ("s5cmd", "rclone"):
            measured = run_baseline(ctx, tool, source, f"{label}-{tool}", count)
            if measured is not None:
                runs[tool].append(measured)
    ratio_lines(count, runs)
    say(f"   {load_text()}")


def disk_copy_of(ctx: Ctx, label: str) -> Path:
    """The files our export wrote, manifest set aside: the baselines upload exactly these."""
    room = room_folder(ctx.workdir / "exports" / label)
    source = ctx.workdir / "small-source"
    (room / "manifest.jsonl").rename(ctx.workdir / "small-manifest.jsonl")
    room.rename(source)  # a plain name: s5cmd reads '[' in the room's folder name as a pattern
    return source


def run_baseline(ctx: Ctx, tool: str, source: Path, prefix: str, count: int) -> Run | None:
    upload: Callable[[Path, str, str, str], base.Timing]
    upload = base.s5cmd_upload if tool == "s5cmd" else base.rclone_upload
    if tool == "rclone" and not base.rclone_available():
        say("   rclone not installed: skipped (apt-get install rclone)")
        return None
    with servers_cpu({"moto": ctx.moto.process.pid}) as usage:
        timing = upload(source, ctx.moto.url, BUCKET, prefix)
    landed = base.count_objects(ctx.s3, BUCKET, prefix)
    if landed != count:
        raise base.BaselineError(f"{tool} uploaded {landed} of {count} files")
    run = Run(timing.elapsed_s, timing.cpu_s, usage.spent)
    say(f"   {tool:6} {run.elapsed_s:7.2f}s  {count / run.elapsed_s:7.1f} files/s  "
        f"{run.cpu_text(tool)}")
    return run


def ratio_lines(count: int, runs: dict[str, list[Run]]) -> None:
    best = {tool: min(found, key=lambda run: run.elapsed_s)
            for tool, found in runs.items() if found}
    ours = count / best["ours"].elapsed_s
    say(f"   best of {len(runs['ours'])}: ours {ours:.1f} files/s")
    for tool, target in (("s5cmd", 0.9), ("rclone", None)):
        if tool not in best:
            continue
        theirs = count / best[tool].elapsed_s
        ratio = ours / theirs
        judged = verdict(ratio, target, at_least=True) if target else "(no target)"
        say(f"   ours / {tool}: {ours:.1f} / {theirs:.1f} files/s = {ratio:.2f}×  {judged}")
    say("   CPU per file (where the time goes; the two cores are shared by all of these):")
    for tool, run in best.items():
        say(f"     {tool:6} {run.per_file_ms('exporter' if tool == 'ours' else tool, count)}")


# --- scene 2: latency at the source -----------------------------------------------------------


def scene_latency(ctx: Ctx) -> None:
    count, latency_ms = ctx.sizes.latency_files, ctx.latency_ms
    concurrency, list_concurrency = ctx.latency_concurrency, 8
    say(f"== {count:,} small files with {latency_ms:g} ms injected at the source "
        f"(our concurrency pinned at {concurrency}, listing {list_concurrency}; the ideal asks "
        f"for {1000 / latency_ms * concurrency:.0f} files/s of the S3 server)")
    say(f"   {load_text()}")
    proxy = ctx.proxy([f"bench-latency:files={count}:size={SMALL_SIZE}"], latency_ms=latency_ms)
    watched = {"proxy": proxy.process.pid, "moto": ctx.moto.process.pid}
    pinned = {"VDR_EXPORT_CONCURRENCY": str(concurrency),
              "VDR_EXPORT_MAX_CONCURRENCY": str(concurrency),
              "VDR_EXPORT_LIST_CONCURRENCY": str(list_concurrency)}
    best: Run | None = None
    best_plan = 0.0
    for round_number in range(ctx.repeat):
        with servers_cpu(watched) as usage:
            ours = run_ours(ctx, proxy, "bench-latency", f"latency-{round_number}", pinned)
        run = Run(ours["elapsed_s"], ours["cpu_s"], usage.spent)
        say(f"   ours   {run.elapsed_s:7.2f}s  {count / run.elapsed_s:7.1f} files/s  "
            f"(listing {ours['plan_s']:.2f}s, then files {run.elapsed_s - ours['plan_s']:.2f}s)  "
            f"{run.cpu_text('exporter')}")
        if best is None or run.elapsed_s < best.elapsed_s:
            best, best_plan = run, ours["plan_s"]
    assert best is not None

    naive, files, pages = run_naive(ctx, proxy, watched)
    latency_s = base.source_latency_s(proxy.url)
    say(f"   source latency: {latency_ms:g} ms injected, {latency_s * 1000:.2f} ms per request "
        "measured (median of 50 sequential GETs: the proxy's own handling and timer "
        "granularity added)")
    serial = 2  # the room's record and the capabilities, before anything can overlap
    ideal = latency_s * (serial + pages / list_concurrency + files / concurrency)
    say(f"   latency-bound ideal = {latency_s * 1000:.2f} ms × ({serial} + {pages} listing pages "
        f"÷ {list_concurrency} + {files:,} downloads ÷ {concurrency}) = {ideal:.2f}s")
    listing_ideal = latency_s * (serial + pages / list_concurrency)
    say(f"     by phase: listing {best_plan:.2f}s vs {listing_ideal:.2f}s ideal, files "
        f"{best.elapsed_s - best_plan:.2f}s vs {ideal - listing_ideal:.2f}s ideal")
    say(f"   ours / ideal: {best.elapsed_s:.2f}s / {ideal:.2f}s = {best.elapsed_s / ideal:.2f}×  "
        f"{verdict(best.elapsed_s / ideal, 1.15, at_least=False)}")
    nominal = latency_ms / 1000 * (serial + pages / list_concurrency + files / concurrency)
    say(f"     (against the nominal {latency_ms:g} ms: {best.elapsed_s / nominal:.2f}×)")
    say(f"   naive / ours: {naive.elapsed_s:.2f}s / {best.elapsed_s:.2f}s = "
        f"{naive.elapsed_s / best.elapsed_s:.2f}× faster  "
        f"{verdict(naive.elapsed_s / best.elapsed_s, 5.0, at_least=True)}")
    cpu = best.cpu_s + sum(best.servers.values())
    floor = cpu / (os.cpu_count() or 1)
    say(f"   CPU floor: ours used {cpu:.1f} CPU-seconds ({best.per_file_ms('exporter', count)} "
        f"per file); on {os.cpu_count()} idle cores that alone takes ≥ {floor:.2f}s "
        f"= {floor / ideal:.2f}× the latency-bound ideal")
    say(f"   {load_text()}")


def run_naive(ctx: Ctx, proxy: stack.Service, watched: dict[str, int]) -> tuple[Run, int, int]:
    from vdr_client import VdrClient

    with VdrClient(proxy.url) as client:
        room = client.find_room("bench-latency")
    target = ctx.folder("naive")
    with servers_cpu(watched) as usage:
        timing, files, pages = base.naive_export(proxy.url, room.root_folder_id, target, ctx.s3,
                                                 BUCKET, "naive")
    landed = base.count_objects(ctx.s3, BUCKET, "naive")
    if landed != files:
        raise base.BaselineError(f"the naive exporter uploaded {landed} of {files} files")
    run = Run(timing.elapsed_s, timing.cpu_s, usage.spent)
    say(f"   naive  {run.elapsed_s:7.2f}s  {files / run.elapsed_s:7.1f} files/s  "
        f"(one file at a time: to disk, then up) {run.cpu_text('naive')}")
    return run, files, pages


# --- scene 3: one large file ------------------------------------------------------------------


def scene_large(ctx: Ctx) -> None:
    size, flat = ctx.sizes.large_bytes, ctx.sizes.flat_bytes
    say(f"== one large file: {size / MiB:,.0f} MiB, source -> disk + S3 vs disk -> S3 (boto3)")
    say(f"   {load_text()}")
    proxy = ctx.proxy([f"bench-large:files=1:size={size}", f"bench-flat:files=1:size={flat}"])
    watched = {"proxy": proxy.process.pid, "moto": ctx.moto.process.pid}

    flat_run = run_ours(ctx, proxy, "bench-flat", "flat")
    say(f"   ours   {flat / MiB:,.0f} MiB file: peak RSS {flat_run['max_rss_mib']:.0f} MiB")
    drop_prefix(ctx, "flat")

    # As many tries as boto3 gets, taken in turns with its: moto's time to assemble a 2 GiB
    # object varies by seconds from one upload to the next, and drifts with the machine's load,
    # so the side with more tries, or with all its tries in a calmer minute, would win.
    ours_runs: list[dict[str, Any]] = []
    boto3_best = math.inf
    for round_number in range(ctx.repeat):
        for tuning in base.BOTO3_TUNINGS:
            ours_runs.append(run_ours_large(ctx, proxy, watched, len(ours_runs)))
            source = exported_file(ctx.workdir / "exports" / "large-0")
            boto3_best = min(boto3_best, run_boto3(ctx, source, watched["moto"], tuning,
                                                   round_number))
    best_ours = min(ours_runs, key=lambda run: float(run["elapsed_s"]))
    ours_rate = size / MiB / best_ours["elapsed_s"]
    theirs = size / MiB / boto3_best
    say(f"   ours / tuned boto3: {ours_rate:.1f} / {theirs:.1f} MiB/s = {ours_rate / theirs:.2f}×  "
        f"{verdict(ours_rate / theirs, 0.9, at_least=True)}")
    peak = max(best_ours["max_rss_mib"], flat_run["max_rss_mib"])
    state = "PASS" if peak < MEMORY_LIMIT_MIB else "MISS"
    say(f"   peak RSS of our exporter: {flat_run['max_rss_mib']:.0f} MiB at {flat / MiB:,.0f} MiB, "
        f"{best_ours['max_rss_mib']:.0f} MiB at {size / MiB:,.0f} MiB  "
        f"target < {MEMORY_LIMIT_MIB} MiB  {state}")
    say(f"   {load_text()}")


def run_ours_large(
    ctx: Ctx, proxy: stack.Service, watched: dict[str, int], number: int
) -> dict[str, Any]:
    label = f"large-{number}"
    with servers_cpu(watched) as usage:
        ours = run_ours(ctx, proxy, "bench-large", label)
    run = Run(ours["elapsed_s"], ours["cpu_s"], usage.spent)
    rate = ctx.sizes.large_bytes / MiB / run.elapsed_s
    say(f"   ours   {run.elapsed_s:7.2f}s  {rate:7.1f} MiB/s  "
        f"peak RSS {ours['max_rss_mib']:.0f} MiB  {run.cpu_text('exporter')}")
    drop_prefix(ctx, label)
    return ours


def exported_file(exports: Path) -> Path:
    """The one file (not the manifest) an export of the large room wrote."""
    return next(path for path in room_folder(exports).rglob("*")
                if path.is_file() and path.name != "manifest.jsonl")


def run_boto3(
    ctx: Ctx, source: Path, moto_pid: int, tuning: tuple[int, int], round_number: int
) -> float:
    """One tuned boto3 upload of `source`; its elapsed seconds."""
    part_size, threads = tuning
    key = f"boto3-{part_size // MiB}-{threads}-{round_number}"
    with servers_cpu({"moto": moto_pid}) as usage:
        timing = base.boto3_upload(ctx.s3, source, BUCKET, key, part_size, threads)
    ctx.s3.delete_object(Bucket=BUCKET, Key=key)
    run = Run(timing.elapsed_s, timing.cpu_s, usage.spent)
    rate = source.stat().st_size / MiB / run.elapsed_s
    say(f"   boto3  {run.elapsed_s:7.2f}s  {rate:7.1f} MiB/s  {part_size // MiB} MiB parts"
        f" × {threads} threads  {run.cpu_text('boto3')}")
    return run.elapsed_s


def drop_prefix(ctx: Ctx, prefix: str) -> None:
    """Free moto's memory of a large object once measured."""
    pages = ctx.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/")
    for page in pages:
        for item in page.get("Contents", []):
            ctx.s3.delete_object(Bucket=BUCKET, Key=item["Key"])


# --- scene 4: workers -------------------------------------------------------------------------


def scene_workers(ctx: Ctx) -> None:
    count = ctx.sizes.small_files
    shard_files = math.ceil(count / WORKER_SHARDS)
    latency = f", {ctx.workers_latency_ms:g} ms at the source" if ctx.workers_latency_ms else ""
    say(f"== the small-file room ({count:,} × {SMALL_SIZE // 1024} KiB{latency}) in "
        f"{WORKER_SHARDS} shards over 1, 2, 4 `vdr worker` processes (real RQ on Redis)")
    say(f"   {load_text()}")
    proxy = ctx.proxy([f"bench-small:files={count}:size={SMALL_SIZE}"],
                      latency_ms=ctx.workers_latency_ms)
    os.environ.update(VDR_API_URL=proxy.url, VDR_EXPORT_SHARD_MAX_FILES=str(shard_files))
    watched = {"proxy": proxy.process.pid, "moto": ctx.moto.process.pid}
    timings: dict[int, float] = {}
    for workers in WORKER_COUNTS:
        best = math.inf
        for round_number in range(ctx.repeat):
            with servers_cpu(watched) as usage:
                elapsed = export_with_workers(ctx, workers, f"workers-{workers}-{round_number}")
            spent = ", ".join(f"{n} {c:.1f}s" for n, c in usage.spent.items())
            say(f"   {workers} worker{'s' if workers > 1 else ' '} {elapsed:7.2f}s  "
                f"{count / elapsed:7.1f} files/s  cpu: {spent}")
            best = min(best, elapsed)
        timings[workers] = best
    one = timings[1]
    speedups = ", ".join(f"{n} workers {one / t:.2f}×" for n, t in timings.items() if n > 1)
    say(f"   speed-up over 1 worker: {speedups}  (no target; {os.cpu_count()} cores shared "
        "with moto, the proxy and Redis)")
    say(f"   {load_text()}")


def export_with_workers(ctx: Ctx, workers: int, label: str) -> float:
    """Start idle workers, queue the export, time it until its report is stored."""
    from redis import Redis
    from rq import Queue, Worker

    from jobs import api, store
    from vdr_client import VdrClient

    fresh_redis()
    queue_name = f"bench-{label}"
    redis = Redis.from_url(stack.REDIS_URL)
    client = VdrClient(os.environ["VDR_API_URL"])
    processes = [start_worker(ctx, queue_name, f"{label}-{n}") for n in range(workers)]
    try:
        wait_until(lambda: Worker.count(queue=Queue(queue_name, connection=redis)) == workers,
                   f"{workers} workers to register")
        engine = store.get_engine(os.environ["DATABASE_URL"])
        started = time.perf_counter()
        job = api.enqueue_export(
            room_ref="bench-small", s3_url=f"s3://{BUCKET}/{label}", requested_by="bench",
            redis=redis, engine=engine, client=client,
            local_root=str(ctx.folder("exports", label)), queue=queue_name,
        )
        wait_until(lambda: _final(store, engine, job.id), f"job {job.id} to finish", 1800)
        elapsed = time.perf_counter() - started
        report = store.get_report(engine, job.id)
        if report is None or report.state != "succeeded" or report.files_done != report.files_total:
            raise RuntimeError(f"the {workers}-worker export did not succeed: {report}")
        return elapsed
    finally:
        stop_workers(processes)
        redis.close()
        client.close()


def _final(store: Any, engine: Any, job_id: str) -> bool:
    job = store.get_job(engine, job_id)
    return job is not None and job.state in ("succeeded", "failed", "cancelled")


def start_worker(ctx: Ctx, queue: str, name: str) -> subprocess.Popen[bytes]:
    vdr = stack.bin_path("vdr")
    assert vdr is not None
    with open(ctx.workdir / f"worker-{name}.log", "wb") as sink:
        return subprocess.Popen([vdr, "worker", "--queue", queue, "--name", name],
                                stdout=sink, stderr=subprocess.STDOUT, env=os.environ.copy(),
                                start_new_session=True)


def stop_workers(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # RQ's warm shutdown: they are idle by now
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


# --- main -------------------------------------------------------------------------------------

SCENES: dict[str, Callable[[Ctx], None]] = {
    "small": scene_small,
    "latency": scene_latency,
    "large": scene_large,
    "workers": scene_workers,
}


CALM_WAIT_S = 120


def wait_for_calm(load: float | None) -> None:
    """Give colleagues' test runs a chance to finish before measuring (bounded)."""
    if load is None:
        return
    waited = time.monotonic()
    while stack.load_average()[0] > load and time.monotonic() - waited < CALM_WAIT_S:
        time.sleep(5)
    if stack.load_average()[0] > load:
        say(f"(load still above {load:g} after {CALM_WAIT_S}s: measuring anyway)")


def header(ctx: Ctx, args: argparse.Namespace) -> None:
    import moto

    say(f"vdr export benchmark — {time.strftime('%Y-%m-%d %H:%M:%S')}, {code_version()}, "
        f"{'quick' if args.quick else 'full'} sizes, best of {ctx.repeat}")
    say(f"python {platform.python_version()}, moto {moto.__version__} (server mode, own process, "
        f"{ctx.moto.url}), s5cmd {tool_version('s5cmd', 'version')}, "
        f"rclone {tool_version('rclone', 'version')}")
    say(f"{load_text()}")
    say()


def tool_version(name: str, *argv: str) -> str:
    path = stack.bin_path(name)
    if path is None:
        return "absent"
    output = subprocess.run([path, *argv], capture_output=True, text=True).stdout.split()
    return output[1] if name == "rclone" and len(output) > 1 else (output or ["?"])[0]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Smaller sizes: a smoke run.")
    parser.add_argument("--only", choices=sorted(SCENES), action="append",
                        help="Run only this scene (repeatable).")
    parser.add_argument("--repeat", type=int, default=1,
                        help="Measure each side N times and keep the best (default 1).")
    parser.add_argument("--latency-ms", type=float, default=LATENCY_MS,
                        help=f"Latency at the source in the latency scene ({LATENCY_MS:g} ms).")
    parser.add_argument("--latency-concurrency", type=int, default=LATENCY_CONCURRENCY,
                        help="Downloads at once in the latency scene (default "
                             f"{LATENCY_CONCURRENCY}; see the docstring of LATENCY_CONCURRENCY).")
    parser.add_argument("--workers-latency-ms", type=float, default=0.0,
                        help="Latency at the source in the workers scene (default none).")
    parser.add_argument("--calm", type=float, default=None, metavar="LOAD",
                        help="Before each scene, wait (up to 2 minutes) for the 1-minute load "
                             "average to fall to LOAD.")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="Record our exporter with py-spy into DIR (speedscope files).")
    parser.add_argument("--keep", action="store_true", help="Keep the work folder (logs).")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    sizes = QUICK if args.quick else FULL
    with stack.workspace(keep=args.keep) as workdir:
        moto = stack.start_moto(workdir)
        stack.point_at(moto.url, workdir)
        s3 = stack.s3_client()
        s3.create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
        ctx = Ctx(moto, workdir, sizes, max(1, args.repeat), args.profile, s3, args.latency_ms,
                  args.latency_concurrency, args.workers_latency_ms, args.calm)
        try:
            header(ctx, args)
            for name in args.only or list(SCENES):
                wait_for_calm(ctx.calm)
                say(f"[{name}: {code_version()}]")
                SCENES[name](ctx)
                say()
                for service in ctx.services:
                    service.stop()
                ctx.services.clear()
        finally:
            for service in [*ctx.services, moto]:
                service.stop()
            fresh_redis()
        if args.keep:
            say(f"work folder kept: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
