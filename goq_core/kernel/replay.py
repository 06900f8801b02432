"""The replay guard: admits a message only if its send time is within the allowed clock skew of
now and its nonce has not been seen within that window. Memory is bounded by `max_nonces`.

When the bound is hit the oldest nonces are forgotten and the floor rises: nothing sent at or
before the newest forgotten send time is admitted again, so forgetting never opens a replay hole.
A restarted server gets back the nonces its runtime kept durably (`remember`): the requests that
change state (submit, cancel, shutdown, immolate) are refused after a restart too.
"""

from __future__ import annotations

import heapq


class ReplayGuard:
    __slots__ = ("skew_ns", "max_nonces", "_seen", "_by_time", "_floor_ns")

    def __init__(self, skew_sec: float = 30.0, max_nonces: int = 1_000_000) -> None:
        self.skew_ns = int(skew_sec * 1e9)
        self.max_nonces = max_nonces
        self._seen: set[bytes] = set()
        self._by_time: list[tuple[int, bytes]] = []  # heap of (send time, nonce)
        self._floor_ns = 0

    def __len__(self) -> int:
        return len(self._seen)

    def remember(self, nonce: bytes, sendtime_ns: int, now_ns: int) -> None:
        """Count a nonce as seen (one admitted before a restart), if it is still in the window."""
        if sendtime_ns < now_ns - self.skew_ns or not nonce or nonce in self._seen:
            return
        if len(self._by_time) >= self.max_nonces:
            forgotten_ns, old = heapq.heappop(self._by_time)
            self._seen.discard(old)
            self._floor_ns = max(self._floor_ns, forgotten_ns)
        self._seen.add(nonce)
        heapq.heappush(self._by_time, (sendtime_ns, nonce))

    def admit(self, nonce: bytes, sendtime_ns: int, now_ns: int) -> bool:
        """True if the message is fresh and new (and remember it); False to drop it."""
        oldest_ok = now_ns - self.skew_ns
        if sendtime_ns < oldest_ok or sendtime_ns > now_ns + self.skew_ns:
            return False
        if sendtime_ns <= self._floor_ns or not nonce or nonce in self._seen:
            return False
        heap = self._by_time
        while heap and heap[0][0] < oldest_ok:  # too old to be admitted anyway: forget
            self._seen.discard(heapq.heappop(heap)[1])
        while len(heap) >= self.max_nonces:
            forgotten_ns, old = heapq.heappop(heap)
            self._seen.discard(old)
            self._floor_ns = max(self._floor_ns, forgotten_ns)
        if sendtime_ns <= self._floor_ns:
            return False
        self._seen.add(nonce)
        heapq.heappush(heap, (sendtime_ns, nonce))
        return True
