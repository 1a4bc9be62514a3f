"""Per-key limits: requests running at once (1302) and requests per minute (1303)."""
from __future__ import annotations

import time
from collections import defaultdict, deque

from .auth import Caller
from .errors import TOO_CONCURRENT, TOO_FREQUENT, APIError

WINDOW_S = 60.0


class KeyLimiter:
    def __init__(self, max_concurrency: int | None, rpm: int | None):
        self.default_concurrency, self.default_rpm = max_concurrency, rpm
        self.running: dict[str | None, int] = defaultdict(int)
        self.recent: dict[str | None, deque[float]] = defaultdict(deque)

    def acquire(self, caller: Caller) -> None:
        """Count a request in, or raise. Every successful acquire needs one release."""
        key = caller.key_id
        concurrency = caller.max_concurrency or self.default_concurrency
        rpm = caller.rpm or self.default_rpm
        now = time.monotonic()
        recent = self.recent[key]
        while recent and now - recent[0] >= WINDOW_S:
            recent.popleft()
        if concurrency and self.running[key] >= concurrency:
            raise APIError(TOO_CONCURRENT, f"too many concurrent requests for this key (limit {concurrency})")
        if rpm and len(recent) >= rpm:
            raise APIError(TOO_FREQUENT, f"too many requests for this key (limit {rpm} per minute)")
        recent.append(now)
        self.running[key] += 1

    def release(self, caller: Caller) -> None:
        self.running[caller.key_id] -= 1
        if self.running[caller.key_id] <= 0:
            del self.running[caller.key_id]
