"""Numeric bounds of config fields, declared in the field's type annotation.

A dataclass field of a config section or of a model's options declares its allowed range with
``typing.Annotated``::

    epochs: Annotated[int, Bounds(min=1)] = 100        # or the alias below: PositiveInt
    dropout: Fraction = 0.3                             # 0 <= dropout < 1
    hidden: PositiveInt | None = None                   # null, or at least 1

The config loader (``momok.config``) checks every value against the bounds of its annotation and
names the key on a violation (``path:line: model.dim: must be at least 1, got 0``). NaN and
infinities are rejected for every float field by the loader, bounded or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated


@dataclass(frozen=True)
class Bounds:
    """The closed or open interval a number must lie in; ``None`` leaves that side unbounded."""

    min: float | None = None
    max: float | None = None
    min_open: bool = False
    """true: the value must be strictly greater than ``min``."""
    max_open: bool = False
    """true: the value must be strictly less than ``max``."""

    def problem(self, value: float) -> str | None:
        """``None`` when ``value`` lies within the bounds, else what is wrong with it."""
        low_ok = self.min is None or (value > self.min if self.min_open else value >= self.min)
        high_ok = self.max is None or (value < self.max if self.max_open else value <= self.max)
        return None if low_ok and high_ok else f"must be {self.describe()}, got {value!r}"

    def describe(self) -> str:
        """``positive``, ``at least 1``, ``in [0, 1)``, ..."""
        if self.max is None and self.min == 0:
            return "positive" if self.min_open else "non-negative"
        if self.max is None:
            return f"greater than {self.min}" if self.min_open else f"at least {self.min}"
        if self.min is None:
            return f"less than {self.max}" if self.max_open else f"at most {self.max}"
        return f"in {'(' if self.min_open else '['}{self.min}, {self.max}{')' if self.max_open else ']'}"


PositiveInt = Annotated[int, Bounds(min=1)]
NonNegativeInt = Annotated[int, Bounds(min=0)]
PositiveFloat = Annotated[float, Bounds(min=0, min_open=True)]
NonNegativeFloat = Annotated[float, Bounds(min=0)]
#: a share or probability that must stay below 1, e.g. a dropout rate: 0 <= x < 1
Fraction = Annotated[float, Bounds(min=0, max=1, max_open=True)]
#: a share in the closed interval [0, 1]
UnitInterval = Annotated[float, Bounds(min=0, max=1)]
