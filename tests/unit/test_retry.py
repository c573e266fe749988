"""Retry policy maths: exponential ceilings, full jitter from a seeded RNG, hints, exhaustion."""

from __future__ import annotations

import random

import pytest

from bridge import errors
from bridge.retry import RetryPolicy

TRANSIENT = errors.DingTalkServerError(call="asyncsend_v2", errcode=-1)


def test_ceiling_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(base_s=1.0, cap_s=10.0)
    assert [policy.ceiling(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_full_jitter_is_uniform_below_the_ceiling_and_reproducible() -> None:
    policy = RetryPolicy(base_s=1.0, cap_s=300.0, max_attempts=20, rng=random.Random(42))
    delays = [policy.next_delay(n, TRANSIENT) for n in range(1, 11)]
    expected_rng = random.Random(42)
    expected = [expected_rng.uniform(0.0, min(300.0, 2.0 ** (n - 1))) for n in range(1, 11)]
    assert delays == expected
    assert all(0.0 <= d <= min(300.0, 2 ** (n - 1)) for n, d in zip(range(1, 11), delays, strict=True))


def test_a_throttling_hint_is_a_floor() -> None:
    policy = RetryPolicy(base_s=1.0, cap_s=300.0, rng=random.Random(1))
    throttled = errors.DingTalkThrottled(call="asyncsend_v2", errcode=88, sub_code="90018", retry_after=5.0)
    assert all(policy.next_delay(1, throttled) == 5.0 for _ in range(20))  # ceiling 1 s < hint


def test_exhausted_attempts_and_non_transient_errors_are_not_retried() -> None:
    policy = RetryPolicy(max_attempts=3, rng=random.Random(0))
    assert policy.next_delay(2, TRANSIENT) is not None
    assert policy.next_delay(3, TRANSIENT) is None
    permanent = errors.PermanentDingTalkError(call="recall", errcode=400002)
    assert policy.next_delay(1, permanent) is None
    assert policy.next_delay(1, ValueError("a bug")) is None


@pytest.mark.parametrize("attempt", [1, 5, 12])
def test_mean_delay_is_half_the_ceiling(attempt: int) -> None:
    policy = RetryPolicy(base_s=0.5, cap_s=60.0, max_attempts=100, rng=random.Random(attempt))
    samples = [policy.next_delay(attempt, TRANSIENT) for _ in range(4000)]
    mean = sum(samples) / len(samples)  # type: ignore[arg-type]
    assert abs(mean - policy.ceiling(attempt) / 2) < policy.ceiling(attempt) * 0.05
