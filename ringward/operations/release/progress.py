"""Byte-count progress reporting for long release operations (package, verify, air-gap verify).

Operations take an optional ``progress(phase, bytes_done, bytes_total)`` callback; the CLI turns
it into a progress bar on a terminal (ringward/cli/progress.py) and passes nothing otherwise.
The core stays pure: only operations count bytes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

#: ``progress(phase, bytes_done, bytes_total)``. Within a phase ``bytes_done`` never decreases,
#: never exceeds ``bytes_total``, and the last call has ``bytes_done == bytes_total``.
Progress = Callable[[str, int, int], None]

PHASE_HASH = "hashing binaries"
PHASE_SIGN = "signing binaries"
PHASE_ZIP = "zipping package"
PHASE_VERIFY = "verifying files"


class ByteMeter:
    """Counts the bytes of one phase and forwards them to an optional callback (thread-safe:
    a verifier hashes on a worker thread)."""

    def __init__(self, progress: Progress | None, phase: str, total: int) -> None:
        self.progress = progress
        self.phase = phase
        self.total = max(0, total)
        self.done = 0
        self._lock = threading.Lock()
        if progress is not None:
            progress(phase, 0, self.total)

    def add(self, n: int) -> None:
        if n <= 0:
            return
        with self._lock:
            self.done += n
            if self.progress is not None:
                self.progress(self.phase, min(self.done, self.total), self.total)

    def finish(self) -> None:
        """Report the phase complete (bytes of a file that failed early are counted as done)."""
        with self._lock:
            if self.progress is not None and self.done < self.total:
                self.progress(self.phase, self.total, self.total)
            self.done = max(self.done, self.total)
