"""The charter's ``speech_turn``: the answer cut into spoken segments with timing hints.

Text-to-speech clients use it to pace playback. Segments are sentences; durations assume an
average speaking rate (150 words a minute, 2.5 words a second) and pauses follow punctuation:
longer after a paragraph than after a sentence, short after a clause.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

WORDS_PER_SECOND = 2.5
PAUSE_AFTER_PARAGRAPH = 0.8
PAUSE_AFTER_SENTENCE = 0.4
PAUSE_AFTER_CLAUSE = 0.2

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n{2,}|\n(?=\s*[-*\d])")


@dataclass(frozen=True, slots=True)
class SpeechSegment:
    text: str
    estimated_duration: float
    pause_after: float


@dataclass(frozen=True, slots=True)
class SpeechTurn:
    turn_id: str
    text: str
    created_at: datetime
    segments: list[SpeechSegment]
    average_words_per_second: float
    tempo: float


def speech_turn(turn_id: str, text: str, created_at: datetime) -> SpeechTurn:
    segments: list[SpeechSegment] = []
    position = 0
    for match in [*_SENTENCE_END.finditer(text), None]:
        end = match.start() if match else len(text)
        piece = text[position:end].strip()
        separator = match.group(0) if match else ""
        position = match.end() if match else len(text)
        if not piece:
            continue
        words = len(piece.split())
        segments.append(
            SpeechSegment(
                text=piece,
                estimated_duration=round(words / WORDS_PER_SECOND, 3),
                pause_after=_pause(piece, separator),
            )
        )
    total_words = sum(len(s.text.split()) for s in segments)
    speaking_time = sum(s.estimated_duration for s in segments)
    rate = total_words / speaking_time if speaking_time else 0.0
    return SpeechTurn(
        turn_id=turn_id,
        text=text,
        created_at=created_at,
        segments=segments,
        average_words_per_second=round(rate, 3),
        # Tempo relative to the reference rate: 1.0 means "speak at the normal pace".
        tempo=round(rate / WORDS_PER_SECOND, 3) if rate else 1.0,
    )


def _pause(piece: str, separator: str) -> float:
    if "\n\n" in separator or separator == "":
        return PAUSE_AFTER_PARAGRAPH if separator else 0.0
    if piece[-1] in ".!?…":
        return PAUSE_AFTER_SENTENCE
    return PAUSE_AFTER_CLAUSE
