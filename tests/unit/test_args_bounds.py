"""Numeric flags (issue 8 items 11, 12): ``aep_ops.base.numbers.number`` is the one parser and the one bound
check, and every runbook declares the range of its numeric parameters with ``@runbook(bounds=...)``."""

from __future__ import annotations

import pytest

from aep_ops.engine import runbook as registry
from aep_ops.engine.runbook import runbook
from aep_ops.base.errors import UsageError
from aep_ops.base.numbers import number


@pytest.mark.parametrize("flag, value, kind, bounds, message", [
    ("--scale", "-3", int, {"minimum": 0, "maximum": 1000}, "--scale -3: expected a whole number from 0 to 1000"),
    ("--scale", "1000000", int, {"minimum": 0, "maximum": 1000},
     "--scale 1000000: expected a whole number from 0 to 1000"),
    ("--limit", "99999999999999999999999", int, {"minimum": 1, "maximum": 10_000},
     "--limit 99999999999999999999999: expected a whole number from 1 to 10000"),
    ("--limit", "abc", int, {"minimum": 1}, "--limit abc: expected a whole number of at least 1"),
    ("--limit", "1.5", int, {}, "--limit 1.5: expected a whole number"),
    ("--limit", "9" * 5000, int, {}, "--limit " + "9" * 77 + "...: expected a whole number"),
    ("--parallel", "0", int, {"minimum": 1, "maximum": 256}, "--parallel 0: expected a whole number from 1 to 256"),
    ("--timeout", "nan", float, {}, "--timeout nan: expected a number"),
    ("--timeout", "1e309", float, {}, "--timeout 1e309: expected a number"),
    ("--timeout", "-inf", float, {}, "--timeout -inf: expected a number"),
    ("--timeout", "-1", float, {"above": 0}, "--timeout -1: expected a number above 0"),
    ("--timeout", "0", float, {"above": 0, "maximum": 86400},
     "--timeout 0: expected a number above 0 and at most 86400"),
    ("--timeout", "86401", float, {"above": 0, "maximum": 86400},
     "--timeout 86401: expected a number above 0 and at most 86400"),
    ("--pause", "1\x1b[2J", int, {}, "--pause 1\\x1b[2J: expected a whole number"),
    ("--pause", True, int, {}, "--pause True: expected a whole number"),
    ("--pause", float("nan"), int, {}, "--pause nan: expected a whole number"),
])
def test_a_bad_number_is_one_line_naming_the_flag_and_the_range(flag, value, kind, bounds, message):
    with pytest.raises(UsageError) as exc:
        number(flag, value, kind, **bounds)
    assert str(exc.value) == message


@pytest.mark.parametrize("value, kind, bounds, expected", [
    ("280", int, {"minimum": 0, "maximum": 1000}, 280),
    (" 7 ", int, {}, 7),
    (5, int, {"minimum": 5, "maximum": 5}, 5),
    (3.0, int, {}, 3),
    ("0.5", float, {"above": 0}, 0.5),
    ("1e3", float, {"maximum": 1000}, 1000.0),
    (None, int, {"minimum": 1}, 20),
    ("", int, {"minimum": 1}, 20),
])
def test_a_good_number_comes_back_typed(value, kind, bounds, expected):
    assert number("--n", value, kind, default=20, **bounds) == expected
    assert type(number("--n", value, kind, default=20, **bounds)) is kind


@pytest.fixture
def throwaway():
    yield "test.bounds"
    registry.unregister("test.bounds")


def test_bounds_are_stored_on_the_runbook_and_exposed_on_each_param(throwaway):
    @runbook(throwaway, steps=[], summary="s", bounds={"scale": (0, 10), "ratio": (None, 1.0)})
    def rb(ctx, *, scale: int = 0, ratio: float = 0.5, name: str = "x"):
        pass

    params = {p.name: p for p in rb.params}
    assert rb.bounds == {"scale": (0, 10), "ratio": (None, 1.0)}
    assert params["scale"].bounds == (0, 10) and params["ratio"].bounds == (None, 1.0)
    assert params["name"].bounds == (None, None)
    low, high = params["scale"].bounds
    with pytest.raises(UsageError, match="^--scale 11: expected a whole number from 0 to 10$"):
        number("--scale", "11", int, default=0, minimum=low, maximum=high)


@pytest.mark.parametrize("bounds, problem", [
    ({"name": (0, 1)}, "not a numeric parameter"),
    ({"nope": (0, 1)}, "not a numeric parameter"),
    ({"scale": (5, 1)}, "leave out the default"),
    ({"scale": (1, 10)}, "leave out the default"),
    ({"scale": [0, 1]}, "must be .minimum, maximum."),
])
def test_a_wrong_bound_fails_when_the_runbook_is_declared(throwaway, bounds, problem):
    with pytest.raises(ValueError, match=problem):
        @runbook(throwaway, steps=[], summary="s", bounds=bounds)
        def rb(ctx, *, scale: int = 0, name: str = "x"):
            pass


OWNED_ELSEWHERE: set[str] = set()


def test_every_numeric_parameter_of_a_built_in_runbook_has_bounds():
    unbounded = [f"{rb.id} --{p.name}" for rb in registry.load_all().values() if rb.id not in OWNED_ELSEWHERE
                 for p in rb.params if p.kind in (int, float) and None in p.bounds]
    assert unbounded == []


@pytest.mark.parametrize("runbook_id", ["dr.drill", "db.setup"])
def test_the_seed_scale_allows_the_bench_and_refuses_a_billion_rows(runbook_id):
    registry.load_all()
    (scale,) = [p for p in registry.get(runbook_id).params if p.name == "scale"]
    low, high = scale.bounds
    assert number("--scale", "280", int, minimum=low, maximum=high) == 280  # bench/drill.py --scale 280
    assert number("--scale", "0", int, minimum=low, maximum=high) == 0  # 0: from the configuration
    for bad in ("1000000", "-3"):
        with pytest.raises(UsageError, match=f"^--scale {bad}: expected a whole number from 0 to 1000$"):
            number("--scale", bad, int, minimum=low, maximum=high)


def test_the_engine_checks_the_bounds_whichever_front_door_calls_it():
    """A timer or the chat front door calls the engine without the CLI adapter: same refusal."""
    from aep_ops import config
    from aep_ops.engine.runner import run_runbook

    greet = registry.load_all()["demo.greet"]
    with pytest.raises(UsageError, match=r"^--pause -1: expected a whole number from 0 to 3600$"):
        run_runbook(greet, config.load("local"), params={"name": "x", "pause": -1}, dry_run=True)
    assert run_runbook(greet, config.load("local"), params={"name": "x", "pause": 3600}, dry_run=True).status == "planned"
