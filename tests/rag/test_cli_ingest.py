"""``mongars rag ingest`` as an operator runs it: a folder in, a summary out."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from tests.test_cli import PASSWORD, run


def test_ingests_a_folder_reports_bad_files_and_skips_unchanged_ones(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONGARS_")}
    env |= {
        "MONGARS_DATA_DIR": str(tmp_path / "var"),
        "MONGARS_AUTH__ARGON2_MEMORY_COST_KIB": "1024",
        "MONGARS_AUTH__ARGON2_TIME_COST": "1",
    }
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.md").write_text("# Alpha\n\nThe first document talks about alpine lakes.")
    (docs / "sub" / "b.txt").write_text("The second one is about desert dunes.")
    (docs / "broken.pdf").write_bytes(b"not a pdf")
    (docs / "ignored.bin").write_bytes(b"\x00\x01")
    created = run(env, "user", "create", "ada", "--password-stdin", stdin=PASSWORD + "\n")
    assert created.returncode == 0, created.stderr

    first = run(env, "rag", "ingest", str(docs), "--user", "ada", "--collection", "notes")
    assert first.returncode == 1, first.stderr  # one file failed
    assert "broken.pdf" in first.stderr
    assert "2 new, 0 replaced, 0 unchanged, 1 failed" in first.stderr

    again = run(env, "rag", "ingest", str(docs / "a.md"), "--user", "ada", "--collection", "notes")
    assert again.returncode == 0, again.stderr
    assert "0 new, 0 replaced, 1 unchanged, 0 failed" in again.stderr

    with sqlite3.connect(tmp_path / "var" / "mongars.db") as db:
        rows = db.execute("SELECT collection, chunk_count FROM documents").fetchall()
    assert sorted(rows) == [("notes", 1), ("notes", 1)]

    nobody = run(env, "rag", "ingest", str(docs / "a.md"), "--user", "nobody")
    assert nobody.returncode == 1
    assert "No such user" in nobody.stderr
