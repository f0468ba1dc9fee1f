"""A small name -> entry registry with close-match suggestions for typos."""

from __future__ import annotations

import difflib
from typing import Generic, Iterator, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


def close_matches(name: str, known: list[str], n: int = 3) -> list[str]:
    """Names similar to ``name`` (difflib ratio >= 0.5), best first."""
    return difflib.get_close_matches(name, known, n=n, cutoff=0.5)


class Registry(Generic[T]):
    """Ordered mapping of unique names to entries of one kind ('backend', 'task', ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._origin: dict[str, str] = {}

    def add(self, name: str, entry: T, origin: str = "") -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' registered twice "
                             f"(by {self._origin[name] or '?'} and {origin or '?'}); rename one")
        self._entries[name] = entry
        self._origin[name] = origin

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            known = list(self._entries)
            raise UnknownNameError(self.kind, name, close_matches(name, known), known) from None

    def origin(self, name: str) -> str:
        return self._origin.get(name, "")

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
