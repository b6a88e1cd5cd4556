"""One registry per component family: a config-group option name -> the class that implements it."""

from __future__ import annotations

import inspect
from typing import Callable


class Registry:
    def __init__(self, family: str):
        self.family = family
        self._classes: dict[str, type] = {}

    def register(self, name: str) -> Callable[[type], type]:
        def wrap(cls: type) -> type:
            self._classes[name] = cls
            return cls

        return wrap

    def names(self) -> list[str]:
        return sorted(self._classes)

    def get(self, name: str) -> type:
        if name not in self._classes:
            raise KeyError(f"{self.family}={name} is not a known option; choose one of {', '.join(self.names())}")
        return self._classes[name]

    def knob_names(self, name: str) -> list[str]:
        params = inspect.signature(self.get(name).__init__).parameters
        return [p for p in params if p not in ("self", "spec", "layer")]
