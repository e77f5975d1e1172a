"""Registries for interchangeable parts (methods, encoders, networks, readers)."""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, Tuple

from .errors import AlsegError


class Registry:
    """A name -> (object, one-line description, extra info) map; duplicate names are refused."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, Tuple[Any, str, dict]] = {}

    def register(self, name: str, description: str, **info) -> Callable[[Any], Any]:
        def decorator(obj):
            if name in self._items:
                raise ValueError(f"duplicate {self.kind} name: {name!r}")
            self._items[name] = (obj, description, info)
            return obj
        return decorator

    def get(self, name: str) -> Any:
        if name not in self._items:
            known = ", ".join(sorted(self._items))
            raise AlsegError(f"unknown {self.kind} {name!r}; choose one of: {known}")
        return self._items[name][0]

    def describe(self, name: str) -> str:
        self.get(name)
        return self._items[name][1]

    def info(self, name: str) -> dict:
        self.get(name)
        return dict(self._items[name][2])

    def names(self) -> list:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
