"""Per-stage wall-clock timing, cheap enough to stay on in production code (a few perf_counter calls)."""
import time


class StageTimer:
    """Milliseconds per stage since the last ``start``: ``lap(stage)`` charges the time since the previous lap."""

    def __init__(self):
        self.last = {}
        self._t = time.perf_counter()

    def start(self):
        self.last = {}
        self._t = time.perf_counter()

    def lap(self, stage):
        now = time.perf_counter()
        self.last[stage] = self.last.get(stage, 0.0) + (now - self._t) * 1e3
        self._t = now
