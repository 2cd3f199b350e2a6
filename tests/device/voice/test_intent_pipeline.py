import padacioso
import pytest

from device.voice.plugins.intents import InProcessIntentContainer

QUERIES = [
    "set a timer for five minutes",
    "Set a timer for ten seconds",
    "start a 10 minute timer",
    "what time is it",
    "What is the time",
    "what is the weather like in paris",
    "what is the weather like in Berlin",
    "tell me a joke",
]


def register(container):
    container.add_intent("timer.set", ["set a timer for {duration}", "start a {duration} timer"])
    container.add_intent("time", ["what time is it", "what is the time"])
    container.add_intent("weather", ["what is the weather like in {Location}"])
    container.add_entity("location", ["paris", "london"])
    return container


@pytest.fixture(scope="module")
def stock():
    return register(padacioso.IntentContainer(n_workers=2))


@pytest.fixture
def fast():
    return register(InProcessIntentContainer())


@pytest.mark.parametrize("query", QUERIES)
def test_same_answer_as_stock_padacioso(stock, fast, query):
    assert fast.calc_intent(query) == stock.calc_intent(query)


def test_expected_matches(fast):
    assert fast.calc_intent("set a timer for five minutes") == {
        "name": "timer.set", "entities": {"duration": "five minutes"}, "conf": pytest.approx(0.96)}
    assert fast.calc_intent("what is the weather like in paris")["entities"] == {"location": "paris"}
    assert fast.calc_intent("tell me a joke")["name"] is None


def test_repeated_queries_give_identical_results(fast):
    first = [fast.calc_intent(q) for q in QUERIES]
    second = [fast.calc_intent(q) for q in QUERIES]
    assert first == second


def test_callers_cannot_corrupt_remembered_results(fast):
    query = "set a timer for five minutes"
    result = fast.calc_intent(query)
    result["entities"].pop("duration")
    result["conf"] = 0.0
    result["name"] = "something else"
    for match in fast.calc_intents(query):
        match["entities"].clear()
    again = fast.calc_intent(query)
    assert again["name"] == "timer.set"
    assert again["entities"] == {"duration": "five minutes"}
    assert again["conf"] == pytest.approx(0.96)


def test_removing_an_intent_changes_the_next_result(fast):
    assert fast.calc_intent("what time is it")["name"] == "time"
    fast.remove_intent("time")
    assert fast.calc_intent("what time is it")["name"] is None
    fast.add_intent("time", ["what time is it"])
    assert fast.calc_intent("what time is it")["name"] == "time"


def test_adding_an_intent_changes_the_next_result(fast):
    assert fast.calc_intent("tell me a joke")["name"] is None
    fast.add_intent("joke", ["tell me a joke"])
    assert fast.calc_intent("tell me a joke")["name"] == "joke"


def test_adding_an_entity_changes_the_confidence(fast):
    query = "set a timer for five minutes"
    before = fast.calc_intent(query)["conf"]
    fast.add_entity("duration", ["five minutes"])
    after = fast.calc_intent(query)["conf"]
    assert after > before
    assert after == pytest.approx(1.0)


def test_required_context_changes_the_next_result(fast):
    assert fast.calc_intent("what time is it")["name"] == "time"
    fast.require_context("time", "awake")
    assert fast.calc_intent("what time is it")["name"] is None
    fast.set_context("time", "awake")
    assert fast.calc_intent("what time is it")["name"] == "time"


def test_many_queries_then_the_first_again(fast):
    first = fast.calc_intent(QUERIES[0])
    for i in range(20):
        fast.calc_intent(f"query number {i}")
    assert fast.calc_intent(QUERIES[0]) == first
