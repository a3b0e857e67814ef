"""RequestBook: live requests are always found; only the oldest finished ones are forgotten."""
from ollama_server.engine.generation import Generation
from ollama_server.engine.tracking import RequestBook
from ollama_server.engine.types import GenerateRequest


def generation(request_id: str, state: str) -> Generation:
    made = Generation(GenerateRequest(model="m", prompt="p"), "m", [1], 4, deadline=1e12, request_id=request_id)
    made.state = state
    return made


def test_it_keeps_a_long_running_request_while_forgetting_old_finished_ones():
    book = RequestBook(keep_finished=2)
    book.add(generation("long", "running"))
    for index in range(5):
        book.add(generation(f"done-{index}", "done"))
    assert book.get("long") is not None
    assert [book.get(f"done-{i}") is not None for i in range(5)] == [False, False, False, True, True]


def test_cancel_reaches_live_requests_only():
    book = RequestBook()
    live, finished = generation("a", "queued"), generation("b", "done")
    book.add(live)
    book.add(finished)
    assert book.cancel("a") and live.cancelled
    assert not book.cancel("b")
    assert not book.cancel("missing")
