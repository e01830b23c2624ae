"""Structure-aware chunking with overlap, sized in the embedding model's tokens.

The text is cut into blocks at its structure (Markdown headings, blank lines), blocks that are
too long into sentences, and sentences that are too long into words. Pieces are then packed
into chunks of at most ``max_tokens``; each chunk starts with the last ``overlap_tokens`` of
the previous one, and a heading starts a new chunk (and is repeated as its context) so a
passage never mixes two sections' text without saying so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_HEADING = re.compile(r"^#{1,6}\s+\S")
_BLANK_LINES = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+")


@dataclass(frozen=True, slots=True)
class TextChunk:
    ordinal: int
    text: str
    token_count: int


@dataclass(frozen=True, slots=True)
class _Piece:
    text: str
    tokens: int
    heading: bool = False


def chunk_text(
    text: str,
    *,
    max_tokens: int,
    overlap_tokens: int,
    count_tokens: Callable[[str], int],
) -> list[TextChunk]:
    overlap_tokens = min(overlap_tokens, max_tokens // 2)
    pieces = list(_pieces(text, max_tokens, count_tokens))
    chunks: list[list[_Piece]] = []
    current: list[_Piece] = []
    used = 0
    heading: _Piece | None = None
    for piece in pieces:
        if piece.heading:
            if current and not all(p.heading for p in current):
                chunks.append(current)
                current, used = [], 0
            heading = piece
            current.append(piece)
            used += piece.tokens
            continue
        if current and used + piece.tokens > max_tokens:
            chunks.append(current)
            current = _tail(current, overlap_tokens)
            if heading is not None and heading not in current:
                current.insert(0, heading)
            used = sum(p.tokens for p in current)
            while current and used + piece.tokens > max_tokens:
                used -= current.pop(0).tokens
        current.append(piece)
        used += piece.tokens
    if (current and not all(p.heading for p in current)) or (current and not chunks):
        chunks.append(current)
    result = []
    for ordinal, parts in enumerate(chunks):
        body = "\n\n".join(p.text for p in parts).strip()
        result.append(TextChunk(ordinal, body, sum(p.tokens for p in parts)))
    return result


def _tail(pieces: list[_Piece], overlap_tokens: int) -> list[_Piece]:
    kept: list[_Piece] = []
    used = 0
    for piece in reversed(pieces):
        if piece.heading or used + piece.tokens > overlap_tokens:
            break
        kept.insert(0, piece)
        used += piece.tokens
    return kept


def _pieces(text: str, max_tokens: int, count: Callable[[str], int]) -> list[_Piece]:
    pieces: list[_Piece] = []
    for raw_block in _BLANK_LINES.split(text.replace("\r\n", "\n")):
        lines = raw_block.strip().split("\n")
        # A heading line inside a block starts its own piece.
        block: list[str] = []
        for line in lines:
            if _HEADING.match(line.strip()):
                if block:
                    pieces += _split(" ".join(block).strip(), max_tokens, count)
                    block = []
                heading = line.strip()
                pieces.append(_Piece(heading, count(heading), heading=True))
            elif line.strip():
                block.append(line.strip())
        if block:
            pieces += _split("\n".join(block), max_tokens, count)
    return [p for p in pieces if p.text]


def _split(block: str, max_tokens: int, count: Callable[[str], int]) -> list[_Piece]:
    tokens = count(block)
    if tokens <= max_tokens:
        return [_Piece(block, tokens)]
    sentences = _SENTENCE_END.split(block)
    if len(sentences) > 1:
        return [p for s in sentences for p in _split(s, max_tokens, count)]
    # One enormous sentence: cut it into runs of words.
    words = block.split()
    pieces: list[_Piece] = []
    run: list[str] = []
    used = 0
    for word in words:
        cost = count(word)
        if run and used + cost > max_tokens:
            pieces.append(_Piece(" ".join(run), used))
            run, used = [], 0
        run.append(word)
        used += cost
    if run:
        pieces.append(_Piece(" ".join(run), used))
    return pieces
