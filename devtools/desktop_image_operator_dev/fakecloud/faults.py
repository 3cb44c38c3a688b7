"""Fault rules (`POST /fake/faults`): errors by rate or count, latency, failed operations, dropped answers."""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Mapping

from desktop_image_operator_dev.fakecloud import methods
from desktop_image_operator_dev.fakecloud.codes import StatusCode

_DEFAULT_MESSAGES: dict[StatusCode, str] = {
    StatusCode.UNAVAILABLE: "Service is temporarily unavailable",
    StatusCode.RESOURCE_EXHAUSTED: "Too many requests",
    StatusCode.INTERNAL: "Internal error",
    StatusCode.DEADLINE_EXCEEDED: "Deadline exceeded",
}

_RULE_FIELDS = frozenset(
    {
        "method",
        "transport",
        "code",
        "message",
        "rate",
        "count",
        "latencyMs",
        "failOperation",
        "dropResponse",
        "retryAfterSeconds",
        "seed",
    }
)

# The answers HTTP lets carry Retry-After (429 and 503).
_RETRY_AFTER_CODES = frozenset({StatusCode.RESOURCE_EXHAUSTED, StatusCode.UNAVAILABLE})


def default_message(code: StatusCode) -> str:
    return _DEFAULT_MESSAGES.get(code, f"Injected {code.name} error")


@dataclasses.dataclass
class FaultRule:
    """One rule. It fires on a matching call: always, with probability `rate`, or for the next `count` calls.

    When it fires it adds `latency_ms`, then does at most one of: answer `code` (without doing the work),
    make the started operation end with `code` (`fail_operation`), or do the work and drop the answer
    (`drop_response`). An answered RESOURCE_EXHAUSTED or UNAVAILABLE says `Retry-After: retry_after_seconds`
    when that is set.
    """

    id: str
    method: str = "*"
    transport: str = "*"
    code: StatusCode | None = None
    message: str | None = None
    rate: float | None = None
    count: int | None = None
    latency_ms: float = 0.0
    fail_operation: bool = False
    drop_response: bool = False
    retry_after_seconds: int | None = None
    seed: int | None = None
    remaining: int | None = None
    fired: int = 0
    _random: random.Random = dataclasses.field(default_factory=random.Random, repr=False)

    @classmethod
    def from_json(cls, rule_id: str, data: Mapping[str, object]) -> FaultRule:
        """Build a rule from its JSON; ValueError with a readable reason when it makes no sense."""
        unknown = set(data) - _RULE_FIELDS
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        method = _text(data, "method", "*")
        if method != "*" and method not in methods.ALL and not _is_service_wildcard(method):
            raise ValueError(
                f"unknown method {method!r}; use '*', 'Service.*' or one of: {', '.join(methods.ALL)}"
            )
        transport = _text(data, "transport", "*")
        if transport not in ("*", *methods.TRANSPORTS):
            raise ValueError("transport must be '*', 'rest' or 'grpc'")
        code = StatusCode.parse(data["code"]) if data.get("code") is not None else None
        if code == StatusCode.OK:
            raise ValueError("code must be an error code, not OK")
        count = _count(data.get("count"), "count")
        fail_operation, fail_count = _flag(data.get("failOperation"), "failOperation")
        drop_response, drop_count = _flag(data.get("dropResponse"), "dropResponse")
        count = count or fail_count or drop_count
        rate = _number(data.get("rate"), "rate")
        if rate is not None and not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        latency_ms = _number(data.get("latencyMs"), "latencyMs") or 0.0
        if latency_ms < 0:
            raise ValueError("latencyMs must not be negative")
        if fail_operation and drop_response:
            raise ValueError("a rule either fails operations or drops responses, not both")
        if drop_response and code is not None:
            raise ValueError("dropResponse does the work and answers nothing; it takes no code")
        if fail_operation:
            code = code or StatusCode.INTERNAL
            if (
                method != "*"
                and not _is_service_wildcard(method)
                and method not in methods.STARTING_OPERATION
            ):
                raise ValueError(
                    f"{method} starts no operation; failOperation needs one of the copy/update/delete methods"
                )
        if code is None and not latency_ms and not drop_response:
            raise ValueError("a rule needs at least one of code, latencyMs, failOperation, dropResponse")
        retry_after = _retry_after(data.get("retryAfterSeconds"), code, fail_operation)
        message = data.get("message")
        if message is not None and not isinstance(message, str):
            raise ValueError("message must be a string")
        seed = data.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError("seed must be an integer")
        return cls(
            id=rule_id,
            method=method,
            transport=transport,
            code=code,
            message=message,
            rate=rate,
            count=count,
            latency_ms=latency_ms,
            fail_operation=fail_operation,
            drop_response=drop_response,
            retry_after_seconds=retry_after,
            seed=seed,
            remaining=count,
            _random=random.Random(seed),
        )

    def matches(self, method: str, transport: str) -> bool:
        if self.transport not in ("*", transport):
            return False
        if self.method == "*" or self.method == method:
            return True
        # `from_json` admits only real services before ".*".
        return self.method.endswith(".*") and method.startswith(self.method[:-1])

    def refund(self) -> None:
        """Give back a firing that had no effect (the call failed before its operation started)."""
        if self.remaining is not None:
            self.remaining += 1
        self.fired -= 1

    def try_fire(self) -> bool:
        if self.remaining == 0:
            return False
        if self.rate is not None and self._random.random() >= self.rate:
            return False
        if self.remaining is not None:
            self.remaining -= 1
        self.fired += 1
        return True

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "method": self.method,
            "transport": self.transport,
            "code": None if self.code is None else self.code.name,
            "message": self.message,
            "rate": self.rate,
            "count": self.count,
            "latencyMs": self.latency_ms,
            "failOperation": self.fail_operation,
            "dropResponse": self.drop_response,
            "retryAfterSeconds": self.retry_after_seconds,
            "seed": self.seed,
            "remaining": self.remaining,
            "fired": self.fired,
        }


@dataclasses.dataclass
class FaultDecision:
    """What the fired rules ask of one call."""

    latency_seconds: float = 0.0
    error: tuple[StatusCode, str] | None = None
    # The Retry-After (seconds) that goes with `error`.
    retry_after: int | None = None
    fail_operation: tuple[StatusCode, str] | None = None
    drop_response: bool = False
    # The rule that chose the outcome (error, failed operation or dropped answer).
    outcome_rule: FaultRule | None = None

    def refund_outcome(self) -> None:
        """The call failed by itself: keep the failed operation or dropped answer for the next call."""
        if self.outcome_rule is not None and (self.fail_operation is not None or self.drop_response):
            self.outcome_rule.refund()
            self.fail_operation = None
            self.drop_response = False
            self.outcome_rule = None

    @property
    def label(self) -> str | None:
        """A short word for the request log."""
        if self.error is not None:
            return "error"
        if self.drop_response:
            return "dropResponse"
        if self.fail_operation is not None:
            return "failOperation"
        if self.latency_seconds:
            return "latency"
        return None


class FaultSet:
    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)

    def add(self, data: Mapping[str, object]) -> FaultRule:
        rule = FaultRule.from_json(f"fault-{next(self._ids)}", data)
        self._rules.append(rule)
        return rule

    def remove(self, rule_id: str) -> bool:
        before = len(self._rules)
        self._rules = [rule for rule in self._rules if rule.id != rule_id]
        return len(self._rules) != before

    def clear(self) -> int:
        count = len(self._rules)
        self._rules = []
        return count

    def rules(self) -> list[FaultRule]:
        return list(self._rules)

    def decide(self, method: str, transport: str) -> FaultDecision | None:
        """Fire the matching rules in the order they were added; None when none applies (the usual case)."""
        if not self._rules:
            return None
        decision: FaultDecision | None = None
        starts_operation = method in methods.STARTING_OPERATION
        for rule in self._rules:
            if not rule.matches(method, transport) or (rule.fail_operation and not starts_operation):
                continue
            if not rule.try_fire():
                continue
            decision = decision or FaultDecision()
            decision.latency_seconds += rule.latency_ms / 1000.0
            if decision.outcome_rule is not None:
                continue  # one outcome per call: the first rule that has one chooses it
            if rule.drop_response:
                decision.drop_response = True
            elif rule.code is not None:
                text = rule.message or default_message(rule.code)
                if rule.fail_operation:
                    decision.fail_operation = (rule.code, text)
                else:
                    decision.error = (rule.code, text)
                    decision.retry_after = rule.retry_after_seconds
            else:
                continue  # latency only
            decision.outcome_rule = rule
        return decision


def _is_service_wildcard(method: str) -> bool:
    return method.endswith(".*") and any(name.startswith(method[:-1]) for name in methods.ALL)


def _text(data: Mapping[str, object], name: str, default: str) -> str:
    value = data.get(name, default)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


def _number(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


def _count(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer")
    return value


def _retry_after(value: object, code: StatusCode | None, fail_operation: bool) -> int | None:
    """Whole seconds, as the header carries them; only on an answered 429 or 503."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("retryAfterSeconds must be a whole number of seconds, at least 0")
    if code not in _RETRY_AFTER_CODES or fail_operation:
        raise ValueError("retryAfterSeconds goes with an answered RESOURCE_EXHAUSTED or UNAVAILABLE code")
    return value


def _flag(value: object, name: str) -> tuple[bool, int | None]:
    """`true`/`false`, or a positive number meaning `true` for that many calls."""
    if value is None or value is False:
        return False, None
    if value is True:
        return True, None
    return True, _count(value, name)
