"""Chunking, the prompt's passage budget, and exact top-k: the pure parts of RAG."""

from __future__ import annotations

import itertools

import numpy as np

from mongars.core.chat.prompt import build_prompt
from mongars.core.llm import ChatMessage
from mongars.core.rag.chunking import chunk_text
from mongars.core.rag.index import exact_top_k


def words(text: str) -> int:
    return len(text.split())


class TestChunking:
    def test_short_text_is_one_chunk(self) -> None:
        chunks = chunk_text(
            "One short paragraph.", max_tokens=50, overlap_tokens=10, count_tokens=words
        )
        assert [(c.ordinal, c.text) for c in chunks] == [(0, "One short paragraph.")]

    def test_chunks_respect_the_size_and_overlap(self) -> None:
        text = " ".join(f"Sentence number {i} is here." for i in range(60))
        chunks = chunk_text(text, max_tokens=40, overlap_tokens=10, count_tokens=words)
        assert len(chunks) > 5
        assert all(c.token_count <= 40 for c in chunks)
        for previous, current in itertools.pairwise(chunks):
            # The next chunk starts with the end of the previous one.
            first_sentence = current.text.split("\n\n")[0]
            assert first_sentence in previous.text

    def test_a_heading_starts_a_new_chunk_and_labels_its_continuations(self) -> None:
        body = " ".join(f"Fact {i} about dunes." for i in range(30))
        text = f"# Lakes\n\nLakes are calm.\n\n## Deserts\n\n{body}"
        chunks = chunk_text(text, max_tokens=30, overlap_tokens=0, count_tokens=words)
        assert chunks[0].text == "# Lakes\n\nLakes are calm."
        assert all(c.text.startswith("## Deserts") for c in chunks[1:])

    def test_one_enormous_sentence_is_cut_into_runs_of_words(self) -> None:
        text = "word " * 500
        chunks = chunk_text(text, max_tokens=100, overlap_tokens=0, count_tokens=words)
        assert [c.token_count for c in chunks] == [100] * 5


class TestPassagesInThePrompt:
    def test_passages_join_the_system_prompt_within_their_share(self) -> None:
        passages = [f"p{i} " * 30 for i in range(10)]
        prompt = build_prompt(
            system_prompt="be nice",
            history=[ChatMessage(role="user", content="old " * 10)],
            message="question",
            context_window=300,
            reserved_for_answer=50,
            count_tokens=words,
            passages=passages,
            passage_share=0.5,
        )
        system = prompt.messages[0].content
        assert prompt.passages_used >= 1
        assert f"[{prompt.passages_used}]" in system
        assert f"[{prompt.passages_used + 1}]" not in system
        assert prompt.prompt_tokens_estimate <= 250

    def test_no_passages_no_change(self) -> None:
        prompt = build_prompt(
            system_prompt="be nice",
            history=[],
            message="question",
            context_window=300,
            reserved_for_answer=50,
            count_tokens=words,
        )
        assert prompt.messages[0].content == "be nice"
        assert prompt.passages_used == 0


class TestExactTopK:
    def test_matches_a_full_sort_and_honours_the_mask(self) -> None:
        rng = np.random.default_rng(0)
        vectors = rng.normal(size=(500, 8)).astype(np.float32)
        query = rng.normal(size=8).astype(np.float32)
        mask = rng.random(500) < 0.3
        rows, scores = exact_top_k(vectors, query, 10, mask)
        allowed = np.flatnonzero(mask)
        expected = allowed[np.argsort(-(vectors[allowed] @ query))[:10]]
        assert rows.tolist() == expected.tolist()
        assert np.all(np.diff(scores) <= 0)

    def test_fewer_allowed_rows_than_k(self) -> None:
        vectors = np.eye(4, dtype=np.float32)
        mask = np.array([True, False, False, False])
        rows, _ = exact_top_k(vectors, np.ones(4, dtype=np.float32), 3, mask)
        assert rows.tolist() == [0]
