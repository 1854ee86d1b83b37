"""Summaries of measured samples, and the figures a benchmark reports against its target.

`Summary(samples)` gives median, min, max and percentiles; `Figure` is one line of
docs/benchmarks.md: what was measured, the value as text, the target and whether it was met
(None when a figure has no target and is reported for information).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Summary:
    """Samples of one measurement; empty summaries format as 'n/a'."""

    samples: tuple[float, ...]

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Summary:
        return cls(tuple(float(v) for v in values if v is not None))

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else math.nan

    @property
    def min(self) -> float:
        return min(self.samples) if self.samples else math.nan

    @property
    def max(self) -> float:
        return max(self.samples) if self.samples else math.nan

    def percentile(self, q: float) -> float:
        """The q-th percentile (0..100), linear between closest ranks."""
        if not self.samples:
            return math.nan
        ordered = sorted(self.samples)
        rank = (len(ordered) - 1) * q / 100
        low, high = math.floor(rank), math.ceil(rank)
        return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p95(self) -> float:
        return self.percentile(95)

    def fmt(self, unit: str = "", digits: int = 2, scale: float = 1.0) -> str:
        """'median (min-max, n=N)', e.g. '3.91 s (3.52-4.40, n=20)'."""
        if not self.samples:
            return "n/a"
        value = fmt_number(self.median * scale, digits)
        low = fmt_number(self.min * scale, digits)
        high = fmt_number(self.max * scale, digits)
        suffix = f" {unit}" if unit else ""
        return f"{value}{suffix} ({low}-{high}, n={self.n})"

    def fmt_p(self, unit: str = "", digits: int = 1, scale: float = 1.0) -> str:
        """'p50 X / p95 Y unit (min-max, n=N)'."""
        if not self.samples:
            return "n/a"
        suffix = f" {unit}" if unit else ""
        return (
            f"p50 {fmt_number(self.p50 * scale, digits)} / p95 "
            f"{fmt_number(self.p95 * scale, digits)}{suffix} "
            f"({fmt_number(self.min * scale, digits)}-{fmt_number(self.max * scale, digits)}, "
            f"n={self.n})"
        )


def fmt_number(value: float, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


@dataclass
class Figure:
    """One reported figure: `ok` is True (meets the target), False (misses), None (info)."""

    label: str
    value: str
    target: str = ""
    ok: bool | None = None

    @property
    def verdict(self) -> str:
        if self.ok is None:
            return "info"
        return "pass" if self.ok else "**MISS**"


@dataclass
class Section:
    """The result of one benchmark: its figures, and notes/tables in Markdown."""

    key: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def add(self, label: str, value: str, target: str = "", ok: bool | None = None) -> Figure:
        figure = Figure(label, value, target, ok)
        self.figures.append(figure)
        return figure

    def note(self, text: str) -> None:
        self.notes.append(text)

    @property
    def misses(self) -> list[Figure]:
        return [figure for figure in self.figures if figure.ok is False]


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
