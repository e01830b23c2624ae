"""One table of every benchmark figure beside its baseline and target (DESIGN section 5).

Reads what the benchmarks wrote (``bench/results/overhead.json``, ``ws.json``, ``rag.json``),
prints one row per figure: monGARS, the baseline measured in the same run, their ratio, the
target and PASS/MISS, and writes the rows to ``bench/results/summary.json``. A benchmark that
has not been run is listed as such; a run its own checks declared invalid says INVALID.

    .venv/bin/python bench/report.py              # the table (make bench ends with it)
    .venv/bin/python bench/report.py --markdown   # the same rows as a Markdown table
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Row:
    benchmark: str
    figure: str
    mongars: float | None
    baseline_name: str
    baseline: float | None
    target: str
    verdict: str  # PASS, MISS, n/a (no target, or a run too small to judge), INVALID, not run
    unit: str = ""

    @property
    def ratio(self) -> float | None:
        if self.mongars is None or not self.baseline:
            return None
        return self.mongars / self.baseline


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def overhead_rows(data: dict[str, Any]) -> list[Row]:
    mean, targets, figures = data["mean"], data["targets"], data["figures"]
    verdicts = figures["verdicts"] if data.get("valid", True) else {}
    direct, proxy, ours = mean["direct"], mean["proxy"], mean["mongars"]
    name = "overhead.py"

    def verdict(key: str) -> str:
        return verdicts.get(key, "INVALID")

    rows = [
        Row(name, f"chat turn at 1 in flight, added {q}", ours[f"{q}_ms_1"] - direct[f"{q}_ms_1"],
            "thin aiohttp proxy, added", proxy[f"{q}_ms_1"] - direct[f"{q}_ms_1"],
            f"<= {targets[f'{q}_1']:g} ms", verdict(f"{q}_1"), "ms")
        for q in ("p50", "p99")
    ]  # fmt: skip
    rows.append(
        Row(name, "chat turns per second at 16 in flight", ours["rps_16"], "thin aiohttp proxy",
            proxy["rps_16"], f">= {targets['rps_16']:g} x proxy", verdict("rps_16"), "req/s")
    )  # fmt: skip
    rows.append(
        Row(name, "server CPU per turn at 16 in flight", ours["server_cpu_ms_per_request_16"],
            "thin aiohttp proxy", proxy["server_cpu_ms_per_request_16"], "", "n/a", "ms")
    )  # fmt: skip
    return rows


def ws_rows(data: dict[str, Any]) -> list[Row]:
    ours, bare = data["results"]["mongars"], data["results"]["bare"]
    targets, verdicts = data["targets"], data["verdicts"]
    fanout = f"fan-out to {ours['fanout_sockets']:,} sockets, event -> socket p99"
    spec: list[tuple[str, Callable[[dict[str, Any]], float], str, str, str]] = [
        ("sockets open on one worker", lambda r: r["sockets_open"], "sockets",
         f">= {targets['sockets']:,}", ""),
        ("memory per socket (RSS)", lambda r: r["kb_per_socket"]["rss"], "kb_per_socket",
         f"<= {targets['kb_per_socket']:g} KB", "KB"),
        (fanout, lambda r: r["event_to_socket_ms"]["p99"], "fanout_p99_ms",
         f"<= {targets['fanout_p99_ms']:g} ms", "ms"),
    ]  # fmt: skip
    return [
        Row("ws.py", figure, get(ours), "bare Starlette", get(bare), target,
            verdicts.get(key, "n/a"), unit)
        for figure, get, key, target, unit in spec
    ]  # fmt: skip


def rag_rows(data: dict[str, Any]) -> list[Row]:
    p99_target, recall_target = data["targets"]["search_p99_ms"], data["targets"]["recall_at_10"]
    rows = []
    for key, label in (("search_sqlite_exact", "SQLite, exact"),
                       ("search_pgvector_hnsw", "pgvector HNSW")):  # fmt: skip
        search = data.get(key)
        if search is None:
            continue
        chunks = f"{search['chunks']:,}"
        rows.append(
            Row("rag.py", f"vector search over {chunks} chunks p99 ({label})",
                search["vector_search_p99_ms"], "numpy exact top-10",
                search["baseline_numpy_exact_p99_ms"], f"<= {p99_target:g} ms",
                _verdict(search["vector_search_p99_ms"] <= p99_target), "ms")
        )  # fmt: skip
        recall = search["recall_at_10_vs_exact"]
        rows.append(
            Row("rag.py", f"recall@10 ({label})", recall, "exact search", 1.0,
                f">= {recall_target:g}", _verdict(recall >= recall_target))
        )  # fmt: skip
    ingest = data["ingest"]
    rows.append(
        Row("rag.py", "ingest (chunk, embed, store)", ingest["chunks_per_second"],
            "bare embedder", ingest["baseline_embedder_chunks_per_second"], "", "n/a",
            "chunks/s")
    )  # fmt: skip
    return rows


BENCHMARKS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "overhead.py": overhead_rows,
    "ws.py": ws_rows,
    "rag.py": rag_rows,
}


def collect(results: Path) -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    sources: dict[str, Any] = {}
    for script, make_rows in BENCHMARKS.items():
        path = results / f"{script.removesuffix('.py')}.json"
        if not path.exists():
            rows.append(Row(script, "(not run)", None, "", None, "", "not run"))
            continue
        data = json.loads(path.read_text())
        try:
            rows.extend(make_rows(data))
        except KeyError as exc:
            sys.exit(f"{path}: missing {exc}; was it written by this version of {script}?")
        machine = data.get("machine", {})
        sources[script] = {
            "file": str(path.relative_to(results.parent.parent)),
            "written": datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(),
            "git_commit": machine.get("git_commit"),
            "loadavg_at_start": machine.get("loadavg_at_start"),
        }
    return rows, sources


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def cells(row: Row) -> list[str]:
    unit = f" {row.unit}" if row.unit and row.mongars is not None else ""
    ratio = f"x{row.ratio:.2f}" if row.ratio is not None else ""
    baseline = f"{_number(row.baseline)}{unit}" if row.baseline is not None else ""
    return [row.benchmark, row.figure, f"{_number(row.mongars)}{unit}", row.baseline_name,
            baseline, ratio, row.target, row.verdict]  # fmt: skip


HEADER = ["benchmark", "figure", "monGARS", "baseline (same run)", "its figure", "ratio", "target",
          "verdict"]  # fmt: skip


def text_table(rows: list[Row]) -> str:
    table = [HEADER, *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
             for line in table]  # fmt: skip
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        values = cells(row)
        values[-1] = f"**{values[-1]}**" if values[-1] == "MISS" else values[-1]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="the benchmarks' JSON dir")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    rows, sources = collect(args.results)
    print(markdown_table(rows) if args.markdown else text_table(rows))
    summary = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "sources": sources,
        "rows": [{**asdict(row), "ratio": row.ratio} for row in rows],
    }
    (args.results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
