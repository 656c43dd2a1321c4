"""Start slow imports and connections on a background thread while the caller hashes bytes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Background(Generic[T]):
    """Runs ``load`` on a daemon thread; ``get()`` waits and returns its value or re-raises its
    exception in the caller's thread."""

    def __init__(self, load: Callable[[], T], name: str) -> None:
        self._load = load
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._load()
        except BaseException as exc:  # re-raised by get()
            self._error = exc

    def get(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]
