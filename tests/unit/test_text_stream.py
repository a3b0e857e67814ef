"""UTF-8 reassembly and stop-string matching over streamed pieces."""
from ollama_server.engine.text_stream import StopMatcher
from ollama_server.engine.text_stream import Utf8Assembler


def test_it_holds_a_split_character_until_it_is_whole():
    assembler = Utf8Assembler()
    euro = "€".encode()
    assert assembler.feed(euro[:1]) == ""
    assert assembler.feed(euro[1:]) == "€"
    assert assembler.flush() == ""


def test_it_stops_at_the_first_stop_string_across_pieces():
    matcher = StopMatcher(["END"])
    out = [matcher.feed(piece) for piece in ["hello E", "N", "D more"]]
    assert "".join(out) == "hello "
    assert matcher.matched == "END"


def test_it_releases_held_text_that_was_not_a_stop():
    matcher = StopMatcher(["END"])
    assert matcher.feed("abc E") == "abc "
    assert matcher.feed("x") == "Ex"
    assert matcher.matched is None


def test_it_picks_the_earliest_of_several_stops():
    matcher = StopMatcher(["world", "lo"])
    assert matcher.feed("hello world") == "hel"
    assert matcher.matched == "lo"


def test_flush_returns_a_held_prefix_at_the_end():
    matcher = StopMatcher(["STOP"])
    assert matcher.feed("abc ST") == "abc "
    assert matcher.flush() == "ST"


def test_no_stops_passes_text_through():
    matcher = StopMatcher([])
    assert matcher.feed("anything") == "anything"
