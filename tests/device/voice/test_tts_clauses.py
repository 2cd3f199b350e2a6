from hypothesis import given, settings
from hypothesis import strategies as st

from device.voice.plugins.tts import split_clauses


def test_sentences_are_split():
    assert split_clauses("It is five past three. The timer is set for ten minutes.") == [
        "It is five past three.", "The timer is set for ten minutes."]


def test_long_sentence_is_cut_at_a_comma():
    text = "The weather today is sunny, with a light breeze from the west"
    assert split_clauses(text) == ["The weather today is sunny,", "with a light breeze from the west"]


def test_comma_splits_only_when_both_sides_are_long_enough():
    assert split_clauses("one two three, four five six") == ["one two three,", "four five six"]
    assert split_clauses("one two, three four five six") == ["one two, three four five six"]
    assert split_clauses("one two three, four five") == ["one two three, four five"]
    short_first = "Yes, the timer is set for five minutes"
    assert split_clauses(short_first) == [short_first]


def test_min_words_is_respected():
    text = "one two three, four five six"
    assert split_clauses(text, min_words=4) == [text]
    assert split_clauses(text, min_words=1) == ["one two three,", "four five six"]


def test_short_text_is_left_alone():
    assert split_clauses("Hello.") == ["Hello."]


WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
TOKEN = st.tuples(WORD, st.sampled_from(["", "", "", ",", ".", ";"])).map("".join)


@settings(max_examples=100, deadline=None)
@given(st.lists(TOKEN, min_size=1, max_size=30), st.integers(min_value=1, max_value=5))
def test_every_word_survives_in_order(tokens, min_words):
    text = " ".join(tokens)
    parts = split_clauses(text, min_words)
    assert all(p.strip() for p in parts)
    assert " ".join(parts).split() == text.split()
