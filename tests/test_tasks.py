"""The task contract and the registry: seeds, params, goals, lookup (no device needed)."""

from __future__ import annotations

import json
import random
import string

import pytest

from tasks.base import Task
from tasks.registry import (
    UnknownTask,
    find_tasks,
    get_task,
    match_task,
    suites,
    task_names,
)


@pytest.mark.parametrize("name", task_names())
def test_same_seed_same_params_and_goal(name):
    a, b = get_task(name, seed=11), get_task(name, seed=11)
    assert a.params == b.params and a.goal == b.goal
    cls = type(a)
    assert a.params == cls.sample_params(random.Random(11))
    json.dumps(a.params)  # params travel in results and trajectories
    assert len({json.dumps(get_task(name, seed=s).params) for s in range(8)}) > 1, \
        "the seed changes nothing"
    if a.suite != "miniwob":  # a MiniWoB page tells its goal once loaded (test_miniwob.py)
        assert len({get_task(name, seed=s).goal for s in range(8)}) > 1, "the goal never changes"
    # every placeholder of the template is filled, and nothing is left in braces
    assert "{" not in a.goal and a.goal.strip()


@pytest.mark.parametrize("name", task_names())
def test_every_task_is_complete(name):
    task = get_task(name)
    assert task.name == name and task.suite == name.split("/")[0] in suites()
    assert task.env in ("android", "desktop", "browser")
    assert task.max_steps > 0 and task.tags, f"{name} needs a step budget and tags"
    fields = {f for _, f, _, _ in string.Formatter().parse(task.goal_template) if f}
    assert fields <= set(task.params)


@pytest.mark.parametrize("name", [n for n in task_names() if "text" in get_task(n).params])
def test_the_text_to_write_has_plain_ends_in_the_goal(name):
    """A model must tell where the text it is asked to write ends: the goal quotes it or ends
    with it ("write the line: Total = 42 | checked and save the file" did neither)."""
    for seed in range(8):
        task = get_task(name, seed=seed)
        text = task.params["text"]
        assert f"'{text}'" in task.goal or task.goal.endswith(f": {text}"), task.goal


def test_no_miniwob_page_gives_a_model_fewer_steps_than_the_default():
    """navigate-tree's 12, the bound of its solution's loop, was below the documented 15."""
    from tasks.miniwob.page import MiniWobTask

    short = [n for n in task_names() if n.startswith("miniwob/")
             and get_task(n).max_steps < MiniWobTask.max_steps]
    assert short == []


def test_given_params_are_used_instead_of_drawn():
    drawn = get_task("phone/write-note", seed=3)
    given = get_task("phone/write-note", seed=3, params={**drawn.params, "text": "Feed the cat"})
    assert given.goal == "Write a note that says 'Feed the cat' and save it."


def test_find_tasks_by_name_glob_suite_and_tag():
    assert [c.name for c in find_tasks("phone/book-flight")] == ["phone/book-flight"]
    assert [c.name for c in find_tasks("phone/*flight*")] == [
        "phone/book-flight", "phone/book-flight-from-message"]
    assert [c.name for c in find_tasks(suite="phone")] == [
        n for n in task_names() if n.startswith("phone/")]
    typing = find_tasks(tags=["typing"])
    assert typing and all("typing" in c.tags for c in typing)
    assert find_tasks(tags=["typing", "no-such-tag"]) == []
    assert find_tasks("nope/*") == []


def test_the_registry_holds_only_the_packages_tasks():
    # tests/agent_fakes.py defines Task subclasses too; they are not bundled tasks.
    import tests.agent_fakes  # noqa: F401

    assert all(n.split("/")[0] != "fake" for n in task_names())
    assert all(issubclass(cls, Task) for cls in find_tasks())


@pytest.mark.parametrize("goal, name", [
    ("book a flight", "phone/book-flight"),
    ("Book flights to New York", "phone/book-flight"),
    ("write a note", "phone/write-note"),
    ("turn off the wifi", "phone/set-wifi-bluetooth"),
    ("order a pizza", None),
    ("book a hotel", None),
    ("", None),
])
def test_match_task(goal, name):
    task = match_task(goal)
    assert (task.name if task else None) == name


def test_match_task_respects_the_env():
    assert match_task("book a flight", env="desktop") is None
    assert match_task("book a flight", env="browser").name == "miniwob/book-flight"
    # Without an env, a tie between a phone task and a MiniWoB page goes to the phone.
    assert match_task("book flight").name == "phone/book-flight"


def test_get_task_lists_the_tasks_when_the_name_is_unknown():
    assert get_task("phone/book-flight").name == "phone/book-flight"
    with pytest.raises(UnknownTask, match="phone/book-flight"):
        get_task("phone/nope")
    with pytest.raises(UnknownTask, match="did you mean phone/book-flight or "):
        get_task("phone/book-flght")


@pytest.mark.parametrize("answer, prices", [
    ("$122", {122.0}),
    ("On 2026-01-27 the cheapest is $122", {122.0}),
    ("VA718 at $122", {122.0}),
    ("122 dollars", {122.0}),
    ("It costs 1,122.50 USD", {1122.5}),
    ("$100 or $122", {100.0, 122.0}),  # two prices: no way to be right
    ("559 or $122", {559.0, 122.0}),  # another fare of the route beside it, without its $
    ("$122, or 283 if that one is sold out", {122.0, 283.0}),
    ("$122 for 1 adult, the cheapest of 4 flights", {122.0}),  # no fare of the route
    ("VA718 on 2026-01-27", set()),
    ("283 dollars, departing at 08:15", {283.0}),  # a time is no price
    ("122 dollars for 1 adult", {122.0}),  # said in words, as "$122 for 1 adult"
    ("122 USD (1 passenger)", {122.0}),
    ("On January 27 it costs 122 Dollars.", {122.0}),
    ("$122-559", {122.0, 559.0}),  # a range names two
    ("$122\u2013559", {122.0, 559.0}),
])
def test_a_fare_answer_is_read_for_its_price_not_its_dates_or_flight_codes(answer, prices):
    from tasks.phone.flights import _prices_said

    assert _prices_said(answer, fares={122, 283, 559, 100}) == prices


@pytest.mark.parametrize("answer, same", [
    ("Lunch tomorrow?", True), ("lunch   TOMORROW?", True), ("Lunch tomorrow", True),
    ('"Lunch tomorrow?".', True), ("\u201cLunch tomorrow?\u201d", True),
    ("Lunch today?", False), ("Lunch tomorrow? Yes", False), ("", False), (None, False),
])
def test_an_answer_says_the_same_words_whatever_its_quotes_and_final_punctuation(answer, same):
    from tasks.phone.device import same_answer

    assert same_answer(answer, "Lunch tomorrow?") is same


@pytest.mark.parametrize("text, numbers", [
    ("call +1 (555) 0101 at 5", ["15550101", "5"]),
    ("+1 555 97847", ["155597847"]),  # one number, not a number and a digit
    ("555-0101 and +1 555 8963.", ["5550101", "15558963"]),
    ("Here: +1-555-9784!", ["15559784"]),
    ("+1 555 7213. 5pm is best", ["15557213", "5"]),  # a sentence's end ends the number
    ("+1 555 7213 (24/7)", ["15557213", "24", "7"]),  # only a group of digits in brackets
    ("(555) 123-4567 or 555.123.4567", ["5551234567", "5551234567"]),
    ("+1 555 7213, new since 2026-03-14", ["15557213"]),  # a date is no number
    ("1555-06-01 or +1555-06-01", ["15550601", "15550601"]),  # but numbers spelled as dates
])
def test_numbers_in_a_message_are_read_whole(text, numbers):
    from tasks.phone.device import numbers_in

    assert numbers_in(text) == numbers


def test_a_nodelay_page_has_the_step_budget_of_its_page():
    """book-flight-nodelay is book-flight without waits: its solution took 13 to 26 steps, over
    the generated pages' default budget of 15."""
    for page in ("book-flight", "use-autocomplete", "click-collapsible"):
        assert get_task(f"miniwob/{page}-nodelay").max_steps == get_task(f"miniwob/{page}").max_steps
    assert get_task("miniwob/book-flight-nodelay").max_steps == 40


def test_a_calculation_never_starts_solved():
    """xcalc starts showing 0: no seed asks for a result of 0 (seed 813 once did)."""
    from tasks.desktop.calculator import CalculatorCompute

    assert all(CalculatorCompute(seed=seed).result != 0 for seed in range(20_000))


def test_a_negative_seed_is_refused_where_it_would_repeat_a_positive_one(tmp_path):
    with pytest.raises(ValueError, match="seed is 0 or more"):
        get_task("phone/set-wifi-bluetooth", seed=-1)
    from typer.testing import CliRunner

    from cli.app import app

    for command in (["run", "--task", "phone/set-wifi-bluetooth", "--model", "scripted"],
                    ["bench", "--suite", "phone", "--out", str(tmp_path / "b")]):
        done = CliRunner().invoke(app, [*command, "--seed", "-1"])
        assert done.exit_code == 2 and "--seed" in done.output, done.output
