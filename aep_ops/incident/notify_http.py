"""Bounded delivery of one notification: attempts, backoff, Retry-After, and one deadline.

Every channel (PagerDuty, OpsGenie, Slack) sends through ``deliver``: a first attempt, then up to
``retries`` more on HTTP 429, 408 and 5xx, timeouts and refused or dropped connections, with
exponential backoff and jitter (or the receiver's Retry-After, capped), each attempt's timeout cut
to what is left of the deadline. So a receiver that hangs holds the caller at most the deadline,
never ``timeout x attempts`` more, and a 429 that never ends is given up like any other failure
(the ``pagerduty`` package retries 429 without limit: this module is why it is not used).
Nothing here raises: what went wrong is in the ``Delivery``, without the URL.
"""

from __future__ import annotations

import http.client
import json
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable

from aep_ops.base.redact import redact

RETRY_STATUSES = frozenset({408, 429})
BACKOFF_BASE = 0.5  # seconds before the first retry, doubled each time, with jitter
BACKOFF_CAP = 4.0
RETRY_AFTER_CAP = 5.0  # a Retry-After longer than this is not waited for in full
MIN_ATTEMPT = 0.25  # less time than this left: no further attempt
ANSWER_BYTES = 2048  # of an error answer, kept to say why


@dataclass(frozen=True)
class Policy:
    timeout: float = 5.0  # one request
    retries: int = 2  # after the first attempt
    deadline: float = 15.0  # every attempt of one delivery together

    @property
    def attempts(self) -> int:
        return self.retries + 1


@dataclass(frozen=True)
class Answer:
    """What one attempt got back."""

    status: int
    retry_after: str | None = None
    text: str = ""


@dataclass(frozen=True)
class Delivery:
    ok: bool
    attempts: int
    why: str  # "HTTP 202", or what failed: "HTTP 500 after 3 attempts"
    seconds: float = 0.0


def deliver(attempt: Callable[[float], Answer], policy: Policy, *, sleep: Callable[[float], None] = time.sleep,
            clock: Callable[[], float] = time.monotonic) -> Delivery:
    """Call ``attempt(timeout)`` until it answers 2xx, a status that retrying cannot fix, the
    attempts are spent or the deadline is near. Never raises (a bug in ``attempt`` is a failure)."""
    start = clock()
    why, number = "not attempted", 0
    for number in range(1, policy.attempts + 1):
        left = policy.deadline - (clock() - start)
        if left < MIN_ATTEMPT:
            number -= 1
            why += f"; deadline of {policy.deadline:g} s reached"
            break
        timeout = min(policy.timeout, left)
        try:
            answer = attempt(timeout)
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets are OSErrors
            why, retry, wait = describe(exc, timeout), True, backoff(number)
        except Exception as exc:  # noqa: BLE001 - a bad URL, a bug: not worth retrying, never raised
            why, retry, wait = f"{type(exc).__name__}: {redact(str(exc))[:200]}", False, 0.0
        else:
            if 200 <= answer.status < 300:
                return Delivery(True, number, f"HTTP {answer.status}", clock() - start)
            why = f"HTTP {answer.status}" + (f" ({answer.text})" if answer.text else "")
            retry = answer.status in RETRY_STATUSES or answer.status >= 500
            wait = retry_after(answer.retry_after) if answer.status == 429 else None
            wait = backoff(number) if wait is None else wait
        if not retry or number == policy.attempts:
            break
        left = policy.deadline - (clock() - start)
        if wait + MIN_ATTEMPT > left:
            why += f"; deadline of {policy.deadline:g} s reached"
            break
        sleep(wait)
    plural = "s" if number != 1 else ""
    return Delivery(False, number, f"{why} after {number} attempt{plural}", clock() - start)


def backoff(number: int) -> float:
    """Seconds before retry ``number`` (1-based): exponential, capped, with jitter (half to all of it)."""
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (number - 1)) * random.uniform(0.5, 1.0)


def retry_after(value: str | None) -> float | None:
    """A Retry-After in seconds, capped; None when absent or a date (then the backoff applies)."""
    try:
        seconds = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def describe(exc: BaseException, timeout: float) -> str:
    """Why a request failed, without its URL (a Slack webhook URL is the credential)."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return f"no answer within {timeout:.3g} s"
        return redact(f"{type(reason).__name__}: {getattr(reason, 'strerror', None) or reason}")[:200]
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:.3g} s"
    return redact(f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}")[:200]


def post_json(url: str, body: dict[str, Any], headers: dict[str, str], timeout: float) -> Answer:
    """One POST of ``body`` as JSON; an HTTP error status is an Answer, not an exception."""
    scheme = url.split(":", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"the endpoint must be http:// or https://, not {scheme}:")
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json", "User-Agent": "aep-ops", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked above
            response.read(ANSWER_BYTES)
            return Answer(response.status)
    except urllib.error.HTTPError as exc:
        text = exc.read(ANSWER_BYTES).decode("utf-8", "replace") if exc.fp else ""
        return Answer(exc.code, exc.headers.get("Retry-After") if exc.headers else None, short(text))


def short(text: str, limit: int = 160) -> str:
    """One line of an answer's body (a PagerDuty or OpsGenie error message), redacted."""
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            text = str(data.get("message") or data.get("error") or data.get("status") or text)
            errors = data.get("errors")
            if errors:
                text += f": {errors}"
    except ValueError:
        pass
    line = " ".join(redact(text).split())
    return line if len(line) <= limit else line[:limit - 3] + "..."
