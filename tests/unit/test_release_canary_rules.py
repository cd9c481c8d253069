"""The canary's pure rules: steps, spans, the error-rate verdict, the listener's reading, and the
release configuration's refusals."""

from types import SimpleNamespace

import pytest

from aep_ops.base.errors import ConfigError, UsageError
from aep_ops.base.timefmt import parse_span
from aep_ops.release.canary import parse_steps
from aep_ops.release.gates import FAIL, INCONCLUSIVE, PASS, judge
from aep_ops.release.listener import Forward
from aep_ops.release.settings import ReleaseConfig

TG = {"blue": "arn:tg/blue", "green": "arn:tg/green"}


def config(**release):
    env = {"release": {"listener_arn": "arn:listener", "target_groups": dict(TG), **release}}
    return ReleaseConfig.from_settings(SimpleNamespace(env=env, env_name="staging"))


@pytest.mark.parametrize("text,steps", [("5,25,50,100", [5, 25, 50, 100]), ("100", [100]), (" 1, 50 ,100", [1, 50, 100])])
def test_steps_accepted(text, steps):
    assert parse_steps(text) == steps


@pytest.mark.parametrize("text", ["", "5,25", "50,25,100", "5,5,100", "0,100", "5,101", "a,100", "5;100", "-5,100",
                                  "٥,100", ",".join(str(i) for i in range(80, 101))])
def test_steps_refused_with_the_flag_named(text):
    with pytest.raises(UsageError, match="--steps"):
        parse_steps(text)


@pytest.mark.parametrize("text,seconds", [("5m", 300), ("30s", 30), ("1h", 3600), ("250ms", 0.25), ("90", 90)])
def test_spans(text, seconds):
    assert parse_span("--step-wait", text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "-1m", "1.5m", "m", "5 m 3", "0s"])
def test_bad_spans_name_the_flag(text):
    with pytest.raises(UsageError, match="^--step-wait"):
        parse_span("--step-wait", text, minimum=1)


def test_too_little_traffic_is_inconclusive_never_a_pass():
    cfg = config(min_requests=100, max_error_permille=10)
    assert judge("green", 0, 0, cfg).status == INCONCLUSIVE
    assert judge("green", 99, 0, cfg).status == INCONCLUSIVE
    assert judge("green", 40, 40, cfg).status == INCONCLUSIVE  # all errors, but too few requests to judge
    assert judge("green", 100, 0, cfg).status == PASS


def test_error_rate_above_the_bar_fails_with_its_figures():
    cfg = config(min_requests=100, max_error_permille=10)
    verdict = judge("green", 1000, 11, cfg)
    assert verdict.status == FAIL and "11 of 1000" in verdict.why and verdict.figures["rate_permille"] == 11.0
    assert judge("green", 1000, 10, cfg).status == PASS  # at the bar is not above it


def test_unreadable_metrics_are_inconclusive():
    verdict = judge("green", 0, 0, config(), unreadable=["127.0.0.1:8080: URLError"], read=False)
    assert verdict.status == INCONCLUSIVE and "metrics could be read" in verdict.why


def test_forward_shares_and_serving_colour():
    assert Forward({"blue": 100, "green": 0}, None).serving() == "blue"
    split = Forward({"blue": 95, "green": 5}, 60)
    assert split.serving() is None and split.share("green") == 5 and split.describe() == "blue 95% / green 5%"
    assert Forward({"blue": 0, "green": 0}, None).serving() is None


@pytest.mark.parametrize("release,match", [
    ({"listener_arn": " "}, "listener_arn is not set"),
    ({"target_groups": {"blue": "arn:tg/blue"}}, "target_groups.green is not set"),
    ({"target_groups": {"blue": "arn:x", "green": "arn:x"}}, "same target group"),
    ({"metrics_endpoint": "metrics"}, "must start with /"),
])
def test_configuration_refusals_say_what_to_fix(release, match):
    with pytest.raises(ConfigError, match=match):
        config(**release)
