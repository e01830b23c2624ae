"""Summarise a py-spy ``--format raw`` (collapsed stacks) profile: where the samples went.

    python bench/collapsed.py bench/results/overhead-profile-16.txt [--top 20]

Samples are split between the event-loop thread (``MainThread`` when recorded with
``--threads``, which also keeps SQLAlchemy's greenlet stacks there; otherwise stacks through
``asyncio.Runner.run``) and the other threads (aiosqlite's connection threads, ``to_thread``
workers). py-spy may count a thread blocked inside C (an aiosqlite thread waiting on its queue)
as busy: judge those threads by their CPU time, not by their samples. For each: the share
by package, counting a sample for every package on its stack ("inclusive": sqlalchemy's share
includes the aiosqlite and greenlet work it called) and for the innermost frame only ("self");
then the top functions, self and inclusive.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
_LOOP_MARKERS = ("Runner.run (asyncio/runners.py", "run_forever (asyncio/base_events.py")
# Frames every event-loop sample has: listing them inclusively says nothing.
_OUTER = (
    *("thread (", "typer", "click", "uvicorn/main.py", "uvicorn/server.py", "uvicorn/_compat.py"),
    *("mongars/cli.py", "(mongars:", "(mongars)", "asyncio/runners.py"),
)


def on_loop(frames: list[str]) -> bool:
    if frames[0].startswith("thread ("):
        return frames[0].endswith(": MainThread")
    return any(marker in frame for frame in frames for marker in _LOOP_MARKERS)


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def function(frame: str) -> str:
    match = _FRAME.match(frame)
    return f"{match['func']} ({match['file']})" if match else frame


def package(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "/src/", "/lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/lib/python3.":
                path = path.split("/", 1)[-1]
    first = path.lstrip("/").split("/", 1)[0]
    return first.removesuffix(".py") or path


def _section(title: str, counter: Counter[str], total: int, top: int) -> list[str]:
    lines = [f"  {title}:"]
    lines += [f"    {100 * n / total:5.1f} %  {name}" for name, n in counter.most_common(top)]
    return lines


def summary(path: Path, top: int = 15) -> str:
    stacks = load(path)
    lines = [f"{path.name}: {sum(n for _, n in stacks)} samples"]
    for thread in ("event-loop thread", "other threads"):
        chosen = [
            (frames, n)
            for frames, n in stacks
            if on_loop(frames) == (thread == "event-loop thread")
        ]
        total = sum(n for _, n in chosen)
        if not total:
            continue
        counters: dict[str, Counter[str]] = {
            k: Counter() for k in ("pkg_incl", "pkg_self", "fn_self", "fn_incl")
        }
        for frames, n in chosen:
            counters["pkg_self"][package(frames[-1])] += n
            counters["fn_self"][function(frames[-1])] += n
            for name in {package(f) for f in frames if not any(o in f for o in _OUTER)}:
                counters["pkg_incl"][name] += n
            for name in {function(f) for f in frames if not any(o in f for o in _OUTER)}:
                counters["fn_incl"][name] += n
        lines.append(f"\n{thread}: {total} samples")
        lines += _section("packages, inclusive", counters["pkg_incl"], total, top)
        lines += _section("packages, self", counters["pkg_self"], total, top)
        lines += _section("functions, self", counters["fn_self"], total, top)
        lines += _section("functions, inclusive", counters["fn_incl"], total, top)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    print(summary(args.profile, args.top))


if __name__ == "__main__":
    main()
