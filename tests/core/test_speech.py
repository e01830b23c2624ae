from __future__ import annotations

from datetime import UTC, datetime

from mongars.core.chat.speech import (
    PAUSE_AFTER_PARAGRAPH,
    PAUSE_AFTER_SENTENCE,
    WORDS_PER_SECOND,
    speech_turn,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class TestSpeechTurn:
    def test_sentences_become_timed_segments(self) -> None:
        turn = speech_turn("7", "Hello there. How are you today?\n\nFine, thanks!", NOW)
        assert [s.text for s in turn.segments] == [
            "Hello there.",
            "How are you today?",
            "Fine, thanks!",
        ]
        assert turn.segments[0].estimated_duration == 2 / WORDS_PER_SECOND
        assert turn.segments[0].pause_after == PAUSE_AFTER_SENTENCE
        assert turn.segments[1].pause_after == PAUSE_AFTER_PARAGRAPH
        assert turn.segments[2].pause_after == 0.0
        assert turn.average_words_per_second == WORDS_PER_SECOND
        assert turn.tempo == 1.0
        assert turn.text.startswith("Hello")

    def test_an_empty_answer_has_no_segments(self) -> None:
        turn = speech_turn("1", "", NOW)
        assert turn.segments == []
        assert turn.average_words_per_second == 0.0
