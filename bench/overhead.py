"""What monGARS adds to one non-streamed chat turn (DESIGN section 5), with baselines.

Method
------
Three HTTP targets are measured in the same run, by the same client (wrk), with the same
placement:

- ``direct``: an instant mock OpenAI-compatible backend (``bench/mock_backend.py``: raw asyncio
  protocol + httptools on uvloop, fixed answer prepared as bytes), ``POST /v1/chat/completions``;
- ``proxy``: the thinnest proxy (``bench/thin_proxy.py``: FastAPI under uvicorn, one shared
  aiohttp session, body passed through), the same request, in front of the same mock;
- ``mongars``: ``mongars serve`` (one worker, SQLite in a temporary MONGARS_DATA_DIR,
  MONGARS_LLM__BACKEND=openai pointed at the mock), ``POST /api/v1/conversation/chat`` with
  ``{"message": ...}`` and an API key (``Authorization: Bearer mg_...``). Each request starts a
  fresh conversation, so the prompt is always system prompt + one message: authentication,
  validation, storing the question and an ``incomplete`` answer, prompt building, the backend
  call (monGARS streams it from the backend even for a non-streamed turn), storing the complete
  answer and the response are all timed. Rate limits and quotas stay on, set far above what the
  run can reach, so their cost is counted but they never refuse.

Placement as in DESIGN's references: the server under test (proxy or monGARS) is pinned to core 0
(``taskset``); the mock, wrk and this script share core 1. Each target is warmed up under load,
then every figure is measured ``--runs`` times (targets interleaved, order rotated each run) and
the mean is reported: p50 and p99 latency with 1 request in flight, requests per second and p50
with 16 in flight. "Added" latency is monGARS (or proxy) minus the direct mock, same client.

Afterwards the SQLite database is checked against wrk's counts: every turn answered 200 must be
stored with a complete answer (wrk abandons at most one request per connection at the end of
each run; monGARS still completes those, so the database may hold up to that many more).

    .venv/bin/python bench/overhead.py            # about 2.5 minutes
    .venv/bin/python bench/overhead.py --quick    # about 35 seconds, for a smoke check

Exit status 0 whether or not the targets are met; 1 if the run is invalid (non-2xx answers,
socket errors, or the storage check failed), keeping the data dir for inspection.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

import collapsed
from mock_backend import ANSWER, MODEL

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results" / "overhead.json"
MESSAGE = "What is the capital of France?"
USERNAME, PASSWORD = "bench", "bench-password-not-secret"
INFLIGHT = (1, 16)
FOREIGN_CPU_WARN = 0.05
NEVER_REACHED = 10**12  # a rate limit or quota that is checked on every turn, never exceeded
TARGETS = {  # DESIGN section 5, gateway overhead per non-streamed chat
    "p50_1": 3.0,  # ms added at 1 in flight
    "p99_1": 15.0,  # ms added at 1 in flight
    "rps_16": 0.5,  # fraction of the thinnest proxy's req/s at 16 in flight
}

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = [==[{body}]==]
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_RESULT %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f\\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


@dataclass(frozen=True)
class Target:
    name: str
    process: subprocess.Popen[bytes]  # the serving process (its CPU time, whether it is alive)
    port: int
    path: str
    body: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Sample:
    target: str
    inflight: int
    run: int  # 0 = warm-up, -1 = under the profiler; neither counts in the figures
    seconds: float
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    server_cpu_ms_per_request: float  # user + system CPU of the serving process, all threads
    backend_connections: int = 0  # TCP connections the mock accepted during the run
    # CPU time used on the server's core by anything but the server (other processes, steal):
    # a share of the run's wall time. Above a few percent the figures are not trustworthy.
    foreign_cpu_share: float = 0.0


class Processes:
    """Every process this script starts, each in its own process group, stopped in ``close``."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        command: list[str],
        *,
        core: int | None,
        log: Path | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stdin: int | None = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        if core is not None:
            command = [_tool("taskset"), "-c", str(core), *command]
        output = log.open("ab") if log else subprocess.PIPE
        process = subprocess.Popen(  # noqa: S603 - our own fixed commands
            command,
            stdin=stdin,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        if log:
            output.close()  # type: ignore[union-attr]
        self.started.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(grace)
        if process.stdout:
            process.stdout.close()

    def close(self) -> None:
        for process in reversed(self.started):
            self.stop(process)


def _tool(name: str) -> str:
    """A program on PATH or in this interpreter's bin directory (py-spy installed by pip)."""
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        sys.exit(f"{name} is not installed; see bench/README.md")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _request(
    port: int, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        payload = None if body is None else json.dumps(body)
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        connection.close()


def _wait_ready(port: int, path: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}")
        with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
            if _request(port, "GET", path)[0] == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready on port {port}")


def _mongars_command() -> list[str]:
    script = Path(sys.executable).with_name("mongars")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mongars"]


def start_mongars(
    processes: Processes, data_dir: Path, port: int, mock_port: int, core: int | None
) -> tuple[subprocess.Popen[bytes], str]:
    """Serve monGARS against the mock, create an account, return the server and an API key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONGARS_")}
    env |= {
        "MONGARS_ENV": "development",
        "MONGARS_DATA_DIR": str(data_dir),
        "MONGARS_LLM__BACKEND": "openai",
        "MONGARS_LLM__BASE_URL": f"http://127.0.0.1:{mock_port}/v1",
        "MONGARS_LLM__MODEL": MODEL,
        "MONGARS_AUTH__ACCESS_TOKEN_TTL_SECONDS": "86400",
        # Limits and quotas stay on (their cost is part of the overhead) but never refuse.
        "MONGARS_RATE_LIMIT__CHAT_PER_MINUTE": str(NEVER_REACHED),
        "MONGARS_QUOTA__DAILY_MESSAGES": str(NEVER_REACHED),
        "MONGARS_QUOTA__DAILY_TOKENS": str(NEVER_REACHED),
    }
    log = data_dir / "mongars.log"
    create = processes.start(
        [*_mongars_command(), "user", "create", USERNAME, "--password-stdin"],
        core=None,
        log=log,
        env=env,
        cwd=data_dir,  # not the work tree: a developer's .env must not leak in
        stdin=subprocess.PIPE,
    )
    assert create.stdin is not None
    create.stdin.write(f"{PASSWORD}\n".encode())
    create.stdin.close()
    if create.wait(120) != 0:
        raise RuntimeError(f"mongars user create failed; see {log}")
    server = processes.start(
        [*_mongars_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
        core=core,
        log=log,
        env=env,
        cwd=data_dir,
    )
    _wait_ready(port, "/healthz", server, "mongars serve")
    status, tokens = _request(
        port, "POST", "/api/v1/auth/login", {"username": USERNAME, "password": PASSWORD}
    )
    if status != 200:
        raise RuntimeError(f"login answered {status}: {tokens}")
    status, created = _request(
        port, "POST", "/api/v1/api-keys", {"name": "bench"}, token=tokens["access_token"]
    )
    if status != 201:
        raise RuntimeError(f"creating an API key answered {status}: {created}")
    return server, str(created["key"])


def check_answer(target: Target) -> None:
    """One request by hand: the target must answer 200 with the mock's text."""
    token = target.headers.get("Authorization", "").removeprefix("Bearer ") or None
    status, body = _request(target.port, "POST", target.path, json.loads(target.body), token)
    if target.name == "mongars":
        text = body.get("response")
    else:
        text = body["choices"][0]["message"]["content"]
    if status != 200 or text != ANSWER:
        raise RuntimeError(f"{target.name} answered {status}: {body}")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _core_busy_seconds(core: int) -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, line.split()[1:9])
            busy = user + nice + system + irq + softirq + steal
            return busy / os.sysconf("SC_CLK_TCK")
    return 0.0


def run_wrk(
    processes: Processes,
    target: Target,
    inflight: int,
    seconds: float,
    run: int,
    core: int | None,
    scratch: Path,
) -> Sample:
    headers = "\n".join(
        f'wrk.headers["{name}"] = "{value}"'
        for name, value in {"Content-Type": "application/json", **target.headers}.items()
    )
    script = scratch / f"{target.name}.lua"
    script.write_text(WRK_SCRIPT.format(body=target.body, headers=headers))
    command = [
        _tool("wrk"),
        "-t1",
        f"-c{inflight}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        f"http://127.0.0.1:{target.port}{target.path}",
    ]
    cpu_before = _cpu_seconds(target.process.pid)
    process = processes.start(command, core=core)
    output, _ = process.communicate(timeout=seconds + 60)
    cpu = _cpu_seconds(target.process.pid) - cpu_before
    line = next((ln for ln in output.decode().splitlines() if ln.startswith("WRK_RESULT ")), None)
    if target.process.poll() is not None:
        raise RuntimeError(f"{target.name} exited with code {target.process.returncode}")
    if process.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{output.decode()}")
    requests, duration_us, status, *socket_errors, p50, p99, peak = map(int, line.split()[1:])
    return Sample(
        target=target.name,
        inflight=inflight,
        run=run,
        seconds=duration_us / 1e6,
        requests=requests,
        rps=requests / (duration_us / 1e6),
        p50_ms=p50 / 1000,
        p99_ms=p99 / 1000,
        max_ms=peak / 1000,
        non_2xx=status,
        socket_errors=sum(socket_errors),
        server_cpu_ms_per_request=1000 * cpu / max(requests, 1),
    )


def verify_storage(
    db_path: Path, samples: list[Sample], mock_stats: dict[str, int], log: Path
) -> dict[str, Any]:
    """Compare what wrk saw answered with what monGARS stored (and what the mock served)."""
    ours = [s for s in samples if s.target == "mongars"]
    answered = sum(s.requests - s.non_2xx for s in ours) + 1  # + check_answer's request
    abandoned_at_most = sum(s.inflight for s in ours)  # in flight when each wrk run stopped
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        by_state = {
            f"{role}/{state}": count
            for role, state, count in db.execute(
                "SELECT role, status, count(*) FROM messages GROUP BY role, status"
            )
        }
        (complete_answers,) = db.execute(
            "SELECT count(*) FROM messages WHERE role = 'assistant' AND status = 'complete' "
            "AND content = ? AND completion_tokens IS NOT NULL",
            (ANSWER,),
        ).fetchone()
        (conversations,) = db.execute("SELECT count(*) FROM conversations").fetchone()
    text = log.read_text(errors="replace")
    extra = complete_answers - answered
    answers = sum(v for k, v in by_state.items() if k.startswith("assistant/"))
    return {
        "wrk_answered_2xx": answered,
        "wrk_non_2xx": sum(s.non_2xx for s in ours),
        "wrk_socket_errors": sum(s.socket_errors for s in ours),
        "db_messages_by_role_status": by_state,
        "db_complete_answers_with_mock_text": complete_answers,
        "db_conversations": conversations,
        "mock_streamed_completions": mock_stats.get("stream", 0),
        "stored_minus_answered": extra,
        "abandoned_by_wrk_at_most": abandoned_at_most,
        "log_tracebacks": text.count("Traceback"),
        "log_error_lines": sum("ERROR" in ln for ln in text.splitlines()),
        "log_warning_lines": sum("WARNING" in ln for ln in text.splitlines()),
        "ok": 0 <= extra <= abandoned_at_most
        and not any(s.non_2xx or s.socket_errors for s in ours)
        and complete_answers == answers == conversations == mock_stats.get("stream", 0)
        and "Traceback" not in text,
    }


def summarise(samples: list[Sample]) -> dict[str, dict[str, float]]:
    measured = [s for s in samples if s.run > 0]
    out: dict[str, dict[str, float]] = {}
    for name in ("direct", "proxy", "mongars"):
        figures: dict[str, float] = {}
        for n in INFLIGHT:
            runs = [s for s in measured if s.target == name and s.inflight == n]
            for key in ("p50_ms", "p99_ms", "rps", "server_cpu_ms_per_request"):
                values = [getattr(s, key) for s in runs]
                figures[f"{key}_{n}"] = statistics.fmean(values)
                figures[f"{key}_{n}_stdev"] = statistics.pstdev(values)
        out[name] = figures
    return out


HEADER = ("figure", "direct mock", "thin proxy", "monGARS", "monGARS vs base", "proxy vs direct")


def _row(label: str, key: str, mean: dict[str, dict[str, float]], fmt: str) -> list[str]:
    d, p, m = (mean[name][key] for name in ("direct", "proxy", "mongars"))
    if key.startswith("rps"):  # throughput: compare as ratios, monGARS to the proxy
        compare = [f"x{m / p:.3f} of proxy", f"x{p / d:.3f}"]
    elif key.startswith("server_cpu"):  # CPU per request: the direct mock is not comparable
        compare = [f"x{m / p:.1f} of proxy", ""]
    else:  # latency: added to the direct call
        compare = [f"+{m - d:.3f} ms", f"+{p - d:.3f} ms"]
    return [label, *(format(v, fmt) for v in (d, p, m)), *compare]


def render(mean: dict[str, dict[str, float]]) -> tuple[str, dict[str, Any]]:
    d, p, m = mean["direct"], mean["proxy"], mean["mongars"]
    figures: dict[str, Any] = {
        "added_p50_ms_1": m["p50_ms_1"] - d["p50_ms_1"],
        "added_p99_ms_1": m["p99_ms_1"] - d["p99_ms_1"],
        "rps_ratio_to_proxy_16": m["rps_16"] / p["rps_16"],
    }
    passed = {
        "p50_1": figures["added_p50_ms_1"] <= TARGETS["p50_1"],
        "p99_1": figures["added_p99_ms_1"] <= TARGETS["p99_1"],
        "rps_16": figures["rps_ratio_to_proxy_16"] >= TARGETS["rps_16"],
    }
    figures["verdicts"] = {k: "PASS" if ok else "MISS" for k, ok in passed.items()}
    ok = figures["verdicts"]
    rows = [  # "@N": N requests in flight
        [*HEADER, "target", "verdict"],
        [*_row("p50 @1 (ms)", "p50_ms_1", mean, ".3f"), "added <= 3 ms", ok["p50_1"]],
        [*_row("p99 @1 (ms)", "p99_ms_1", mean, ".3f"), "added <= 15 ms", ok["p99_1"]],
        [*_row("req/s @16", "rps_16", mean, ",.0f"), ">= x0.5 of proxy", ok["rps_16"]],
        [*_row("p50 @16 (ms)", "p50_ms_16", mean, ".3f"), "", ""],
        [*_row("server CPU ms/req @16", "server_cpu_ms_per_request_16", mean, ".3f"), "", ""],
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]  # fmt: skip
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines), figures


def machine_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(  # noqa: S603 - fixed command
            [_tool("git"), *args], cwd=ROOT, capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    cpu_model = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    versions = {}
    for package in (
        "mongars",
        "fastapi",
        "starlette",
        "uvicorn",
        "uvloop",
        "httptools",
        "httpx",
        "sniffio",
        "aiohttp",
        "sqlalchemy",
        "aiosqlite",
        "anyio",
        "pydantic",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    wrk_banner = subprocess.run(  # noqa: S603 - fixed command
        [_tool("wrk"), "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "loadavg_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain")),
        "wrk": wrk_banner[0] if wrk_banner else "",
        "packages": versions,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (~35 s), smoke check")
    parser.add_argument("--duration", type=float, help="seconds per measurement (default 6)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per target (default 10)")
    parser.add_argument("--runs", type=int, default=3, help="runs of every figure (default 3)")
    parser.add_argument("--server-core", type=int, default=0, help="core for the server under test")
    parser.add_argument("--load-core", type=int, default=1, help="core for mock, wrk and driver")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    parser.add_argument(
        "--profile",
        type=float,
        default=0,
        metavar="SECONDS",
        help="afterwards, profile monGARS with py-spy for SECONDS at 1 and at 16 in flight "
        "(not counted in the figures); collapsed stacks go beside the JSON results",
    )
    parser.add_argument("--keep", action="store_true", help="keep the data dir (DB, logs)")
    args = parser.parse_args()
    args.duration = args.duration or (1.0 if args.quick else 6.0)
    args.warmup = args.warmup or (2.0 if args.quick else 10.0)
    return args


def start_targets(
    processes: Processes, scratch: Path, server_core: int | None, load_core: int | None
) -> list[Target]:
    """Start the mock, the thin proxy and monGARS; each answers one request correctly."""
    mock_port, proxy_port, mongars_port = _free_port(), _free_port(), _free_port()
    mock = processes.start(
        [sys.executable, str(BENCH_DIR / "mock_backend.py"), "--port", str(mock_port)],
        core=load_core,
        log=scratch / "mock.log",
    )
    _wait_ready(mock_port, "/v1/models", mock, "the mock backend")
    upstream = f"http://127.0.0.1:{mock_port}"
    proxy = processes.start(
        [sys.executable, str(BENCH_DIR / "thin_proxy.py"), "--port", str(proxy_port),
         "--upstream", upstream],
        core=server_core,
        log=scratch / "proxy.log",
    )  # fmt: skip
    _wait_ready(proxy_port, "/healthz", proxy, "the thin proxy")
    server, api_key = start_mongars(processes, scratch, mongars_port, mock_port, server_core)
    chat = "/v1/chat/completions"
    openai_body = json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": MESSAGE}], "stream": False}
    )
    targets = [
        Target("direct", mock, mock_port, chat, openai_body, {}),
        Target("proxy", proxy, proxy_port, chat, openai_body, {}),
        Target(
            "mongars",
            server,
            mongars_port,
            "/api/v1/conversation/chat",
            json.dumps({"message": MESSAGE}),
            {"Authorization": f"Bearer {api_key}"},
        ),
    ]
    for target in targets:
        check_answer(target)
    return targets


def profile(
    processes: Processes,
    target: Target,
    seconds: float,
    load_core: int | None,
    scratch: Path,
    out_dir: Path,
) -> list[Sample]:
    """py-spy on monGARS (all threads, CPU only) while wrk loads it at 1, then 16 in flight."""
    samples: list[Sample] = []
    pid = str(target.process.pid)
    for inflight in INFLIGHT:
        out = out_dir / f"overhead-profile-{inflight}.txt"
        spy = processes.start(
            [_tool("py-spy"), "record", "--pid", pid, "--duration", f"{seconds:.0f}",
             "--rate", "200", "--function", "--threads", "--nonblocking", "--format", "raw",
             "--output", str(out)],
            core=load_core,
            log=scratch / "py-spy.log",
        )  # fmt: skip
        time.sleep(0.5)  # py-spy attaches
        samples.append(run_wrk(processes, target, inflight, seconds, -1, load_core, scratch))
        if spy.wait(seconds + 30) != 0 or not out.exists():
            raise RuntimeError(f"py-spy failed; see {scratch / 'py-spy.log'}")
        print(f"\nprofile at {inflight} in flight ({out}):\n{collapsed.summary(out, top=12)}")
    return samples


def _stop_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(143)


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    pinning = len(os.sched_getaffinity(0)) >= 2
    server_core = args.server_core if pinning else None
    load_core = args.load_core if pinning else None
    if load_core is not None:
        os.sched_setaffinity(0, {load_core})
    info = machine_info()
    if info["loadavg_at_start"][0] > 1.0:
        print(f"warning: load average {info['loadavg_at_start'][0]:.2f} before starting: "
              "something else is running, the figures will be noisy", file=sys.stderr)  # fmt: skip
    if args.profile:
        _tool("py-spy")  # fail now, not after the runs
    processes = Processes()
    scratch = Path(tempfile.mkdtemp(prefix="mongars-bench-"))
    try:
        targets = start_targets(processes, scratch, server_core, load_core)

        def measure(target: Target, inflight: int, seconds: float, run: int) -> Sample:
            before = _request(targets[0].port, "GET", "/stats")[1].get("connections", 0)
            busy = _core_busy_seconds(server_core) if server_core is not None else 0.0
            sample = run_wrk(processes, target, inflight, seconds, run, load_core, scratch)
            if server_core is not None and target.name != "direct":
                busy = _core_busy_seconds(server_core) - busy
                own = sample.server_cpu_ms_per_request * sample.requests / 1000
                sample = replace(sample, foreign_cpu_share=max(0.0, busy - own) / sample.seconds)
            after = _request(targets[0].port, "GET", "/stats")[1]["connections"]
            sample = replace(sample, backend_connections=after - before - 1)  # - the 2nd /stats
            label = "warm-up" if run == 0 else f"run {run}"
            print(
                f"  {label:8} {target.name:8} {inflight:2} in flight: {sample.rps:9,.0f} req/s  "
                f"p50 {sample.p50_ms:7.3f} ms  p99 {sample.p99_ms:7.3f} ms  "
                f"server CPU {sample.server_cpu_ms_per_request:6.3f} ms/req  "
                f"backend connections {sample.backend_connections}  "
                f"foreign CPU on server core {sample.foreign_cpu_share:4.0%}"
                + (f"  non-2xx {sample.non_2xx}" if sample.non_2xx else "")
                + (f"  socket errors {sample.socket_errors}" if sample.socket_errors else ""),
                flush=True,
            )
            return sample

        samples = [measure(t, 16, args.warmup, 0) for t in targets]
        for run in range(1, args.runs + 1):
            order = targets[run - 1 :] + targets[: run - 1]  # rotate: no target always first
            samples += [measure(t, n, args.duration, run) for t in order for n in INFLIGHT]
        mean = summarise(samples)
        table, figures = render(mean)
        if args.profile:
            out_dir = args.output.parent
            out_dir.mkdir(parents=True, exist_ok=True)
            samples += profile(processes, targets[2], args.profile, load_core, scratch, out_dir)

        time.sleep(1.0)  # let the generations of requests wrk abandoned finish and be stored
        mock_stats = _request(targets[0].port, "GET", "/stats")[1]
        storage = verify_storage(
            scratch / "mongars.db", samples, mock_stats, scratch / "mongars.log"
        )
        print(
            f"\nmonGARS gateway overhead, non-streamed chat (mean of {args.runs} runs, "
            f"{args.duration:g} s each, after {args.warmup:g} s warm-up per target)\n\n{table}\n"
            f"\nmock backend alone (on the load core, beside wrk): "
            f"{mean['direct']['rps_16']:,.0f} req/s at 16 in flight"
            f"\nstorage check: {json.dumps(storage)}"
        )
        results = {
            "benchmark": "gateway overhead per non-streamed chat (DESIGN section 5)",
            "settings": {
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "runs": args.runs,
                "server_core": server_core,
                "load_core": load_core,
                "message": MESSAGE,
                "conversation": "fresh per request",
                "mongars_auth": "API key",
            },
            "machine": info,
            "targets": TARGETS,
            "mean": mean,
            "figures": figures,
            "storage_check": storage,
            "valid": storage["ok"] and not any(s.non_2xx or s.socket_errors for s in samples),
            "disturbed_runs": sum(
                s.run > 0 and s.foreign_cpu_share > FOREIGN_CPU_WARN for s in samples
            ),
            "samples": [asdict(s) for s in samples],
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results written to {args.output}")
        disturbed = [s for s in samples if s.run > 0 and s.foreign_cpu_share > FOREIGN_CPU_WARN]
        if disturbed:
            print(
                f"\nwarning: in {len(disturbed)} runs, other processes used more than "
                f"{FOREIGN_CPU_WARN:.0%} of the server's core (worst "
                f"{max(s.foreign_cpu_share for s in disturbed):.0%}): the figures are disturbed",
                file=sys.stderr,
            )
        failed = [s for s in samples if s.non_2xx or s.socket_errors]
        if failed or not storage["ok"]:
            print(
                f"\nINVALID RUN: {len(failed)} runs had non-2xx answers or socket errors, "
                f"storage check ok={storage['ok']}: the figures above do not measure chat turns; "
                f"see the server log.",
                file=sys.stderr,
            )
            args.keep = True
            sys.exit(1)
    except Exception:
        args.keep = True  # the logs and the database say what went wrong
        raise
    finally:
        processes.close()
        if args.keep:
            print(f"data dir kept (database, logs): {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)  # every process was stopped in main's finally
