"""Faults the sandbox can inject, so that clients are tried against every bad day USCIS has.

`--faults` takes comma-separated `name=value` items, e.g.
`unavailable=0.1,slow=0.05,storm=0.01,malformed=0.02,html=0.02,token_expiry=0.01,shapes=1,seed=7`,
or `random=0.2` for a share of requests that each get one fault of a kind drawn at
random. Probabilities are per request unless said otherwise; the sequence is
reproducible for a given seed and request order.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from enum import Enum


class FaultKind(Enum):
    OUTAGE = "outage"  # sustained 503s, in windows of `window` seconds
    UNAVAILABLE = "unavailable"  # a single 503
    SLOW = "slow"  # the answer is delayed by `delay` seconds
    STORM = "storm"  # the next `storm_length` requests get 429
    MALFORMED = "malformed"  # 200 with a body that is not JSON
    HTML = "html"  # an HTML error page instead of JSON
    TOKEN_EXPIRY = "token_expiry"  # noqa: S105 - the presented token is revoked: 401
    ERRORS = "errors"  # a documented error status (500, 502, 503, 504)
    WRONG_CASE = "wrong_case"  # 200 with a well-formed answer about another receipt


ALIASES = {
    "503": "unavailable",
    "down": "outage",
    "timeout": "slow",
    "delay_p": "slow",
    "429": "storm",
    "ratelimit": "storm",
    "json": "malformed",
    "401": "token_expiry",
    "token": "token_expiry",
    "mixup": "wrong_case",
    "mix": "random",
}
KINDS = {kind.value: kind for kind in FaultKind}
# Checked in this order; the first that fires wins.
ORDER = (
    FaultKind.OUTAGE,
    FaultKind.STORM,
    FaultKind.UNAVAILABLE,
    FaultKind.TOKEN_EXPIRY,
    FaultKind.ERRORS,
    FaultKind.HTML,
    FaultKind.MALFORMED,
    FaultKind.WRONG_CASE,
    FaultKind.SLOW,
)
# What `random=P` draws from: every kind that strikes one request (an outage is a window).
MIXABLE = tuple(kind for kind in ORDER if kind is not FaultKind.OUTAGE)


class FaultSpecError(ValueError):
    """`--faults` could not be read; the message names the item."""


@dataclass(frozen=True)
class FaultPlan:
    rates: dict[FaultKind, float] = field(default_factory=dict)
    delay: float = 2.0
    storm_length: int = 20
    window: float = 60.0
    shapes: bool = False
    seed: int = 0
    mix: float = 0.0  # this share of requests gets one fault of a kind drawn from MIXABLE

    @property
    def active(self) -> bool:
        return any(rate > 0 for rate in self.rates.values()) or self.shapes or self.mix > 0


def _number(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError as exc:
        raise FaultSpecError(f"--faults: {name} needs a number, got {raw!r}") from exc


def parse_faults(spec: str | None) -> FaultPlan:
    """Read a `--faults` value; an unknown name or a bad number is an error, not ignored."""
    plan = FaultPlan()
    if not spec or not spec.strip():
        return plan
    rates: dict[FaultKind, float] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, raw = item.partition("=")
        name = ALIASES.get(name.strip().lower(), name.strip().lower())
        raw = raw.strip() if sep else "1"
        if name == "all":
            rate = _number(name, raw)
            rates.update({kind: rate for kind in FaultKind})
        elif name in KINDS:
            rate = _number(name, raw)
            if not 0 <= rate <= 1:
                raise FaultSpecError(f"--faults: {name} is a probability between 0 and 1")
            rates[KINDS[name]] = rate
        elif name == "random":
            rate = _number(name, raw)
            if not 0 <= rate <= 1:
                raise FaultSpecError("--faults: random is a share between 0 and 1")
            plan = replace(plan, mix=rate)
        elif name == "delay":
            plan = replace(plan, delay=max(0.0, _number(name, raw)))
        elif name == "storm_length":
            plan = replace(plan, storm_length=max(1, int(_number(name, raw))))
        elif name == "window":
            plan = replace(plan, window=max(0.1, _number(name, raw)))
        elif name == "shapes":
            plan = replace(plan, shapes=_number(name, raw) > 0)
        elif name == "seed":
            plan = replace(plan, seed=int(_number(name, raw)))
        else:
            known = ", ".join(
                [*KINDS, "all", "random", "delay", "storm_length", "window", "shapes", "seed"]
            )
            raise FaultSpecError(f"--faults: unknown fault {name!r} (known: {known})")
    return replace(plan, rates=rates)


class FaultInjector:
    """Decides, request by request, which fault (if any) to inject."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._rng = random.Random(plan.seed)
        self._lock = threading.Lock()
        self._storm_left = 0
        self._forced: deque[FaultKind] = deque()
        self._started = time.monotonic()
        self.injected: dict[str, int] = {}

    def _outage_now(self) -> bool:
        rate = self.plan.rates.get(FaultKind.OUTAGE, 0.0)
        if rate <= 0:
            return False
        window = int((time.monotonic() - self._started) / self.plan.window)
        return random.Random(f"{self.plan.seed}:{window}").random() < rate

    def force(self, kind: FaultKind, count: int = 1) -> None:
        """The next `count` requests get `kind`, whatever the plan says (a chaos run's one-offs)."""
        with self._lock:
            self._forced.extend([kind] * count)

    def next_fault(self) -> FaultKind | None:
        with self._lock:
            fault = self._choose()
            if fault is not None:
                self.injected[fault.value] = self.injected.get(fault.value, 0) + 1
            return fault

    def _choose(self) -> FaultKind | None:
        if self._outage_now():
            return FaultKind.OUTAGE
        if self._forced:
            return self._begin(self._forced.popleft())
        if self._storm_left > 0:
            self._storm_left -= 1
            return FaultKind.STORM
        if self.plan.mix > 0 and self._rng.random() < self.plan.mix:
            return self._begin(self._rng.choice(MIXABLE))
        for kind in ORDER[1:]:
            rate = self.plan.rates.get(kind, 0.0)
            if rate > 0 and self._rng.random() < rate:
                return self._begin(kind)
        return None

    def _begin(self, kind: FaultKind) -> FaultKind:
        if kind is FaultKind.STORM:
            self._storm_left = self.plan.storm_length - 1
        return kind

    def error_shape(self) -> int:
        """Which documented body shape the next error uses (0 = the canonical one)."""
        if not self.plan.shapes:
            return 0
        with self._lock:
            return self._rng.randrange(len(SHAPES))

    def pick(self, choices: tuple[int, ...]) -> int:
        with self._lock:
            return self._rng.choice(choices)


def _shape_plain(code: int, message: str) -> str:
    return json.dumps({"code": code, "message": message})


def _shape_string_code(code: int, message: str) -> str:
    return json.dumps({"code": str(code), "message": message})


def _shape_error_object(code: int, message: str) -> str:
    return "\n  " + json.dumps({"error": {"code": code, "message": message}})


def _shape_errors_list(code: int, message: str) -> str:
    return json.dumps({"errors": [{"code": str(code), "message": message, "detail": None}]})


def _shape_apigee(code: int, message: str) -> str:
    return json.dumps({"fault": {"faultstring": message, "detail": {"errorcode": f"http.{code}"}}})


SHAPES = (_shape_plain, _shape_string_code, _shape_error_object, _shape_errors_list, _shape_apigee)


def error_body(code: int, message: str, shape: int = 0) -> str:
    """An error body in one of the shapes USCIS has been seen to use."""
    return SHAPES[shape % len(SHAPES)](code, message)


HTML_ERROR_PAGE = """<!DOCTYPE html>
<html><head><title>502 Bad Gateway</title></head>
<body><h1>Bad Gateway</h1><p>The proxy server received an invalid response from an upstream
server.</p><hr><address>Apache Server at api.uscis.gov Port 443</address></body></html>
"""
