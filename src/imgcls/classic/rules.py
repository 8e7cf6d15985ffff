"""Concept learning on categorical attributes: Find-S and Candidate-Elimination.

Mitchell, "Machine Learning", McGraw-Hill, 1997, chapter 2: Find-S (Table 2.3) finds the most specific
conjunctive hypothesis consistent with the positive examples; Candidate-Elimination (Table 2.5) keeps the
whole version space through its specific boundary S and general boundary G. The running example is
EnjoySport (Table 2.1), after which S = {<Sunny, Warm, ?, Strong, ?, ?>} and
G = {<Sunny, ?, ?, ?, ?, ?>, <?, Warm, ?, ?, ?, ?>} (Figure 2.4).

Hypotheses are conjunctions of one constraint per attribute, printed in the book's notation: a value,
``?`` (any value) or ``∅`` (no value; ``format(ascii=True)`` prints ``0``). A hypothesis with a ``∅``
covers nothing; all such hypotheses are the bottom of the general-to-specific order.

Departures and decisions:

- Attribute domains are the values seen in the table (the book declares them; a value never seen cannot
  change S or G here, since G is only specialised to values that keep it above S).
- Candidate-Elimination runs the general algorithm (sets S and G, pruning as Table 2.5 says), so more than
  one member on either side is handled; for conjunctions S stays a single hypothesis, G may grow.
- When the data is inconsistent with every conjunctive hypothesis, the version space collapses (S or G
  becomes empty): :class:`CandidateElimination` raises a :class:`DataError` naming the example that
  collapses it. Find-S cannot notice this by itself (section 2.4); :class:`FindS` lists the negative
  examples its hypothesis covers instead.
- Tables come from CSV (header row; the last column is the target, yes/no or true/false in any case, or
  ``positive=VALUE``). Values must be categories: a column whose values all parse as numbers is refused
  unless they are integers with at most 10 distinct values (codes), since a conjunction of exact values
  cannot generalise over a continuous range; discretise such a column first.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imgcls.errors import DataError

__all__ = [
    "ANY",
    "EMPTY",
    "AttributeTable",
    "CandidateElimination",
    "FindS",
    "Hypothesis",
    "read_attribute_csv",
]

log = logging.getLogger(__name__)

ANY = "?"
EMPTY = "∅"
MAX_NUMERIC_CODES = 10  # integer-valued columns with at most this many values count as categories
_TRUE = ("yes", "true", "y", "t", "1", "+")
_FALSE = ("no", "false", "n", "f", "0", "-")


# ---------------------------------------------------------------------------------------- hypotheses


@dataclass(frozen=True)
class Hypothesis:
    """A conjunction of attribute constraints (values, :data:`ANY` or :data:`EMPTY`)."""

    constraints: tuple[str, ...]

    @classmethod
    def most_general(cls, n: int) -> Hypothesis:
        return cls((ANY,) * n)

    @classmethod
    def most_specific(cls, n: int) -> Hypothesis:
        return cls((EMPTY,) * n)

    @property
    def is_empty(self) -> bool:
        """True when the hypothesis covers no instance (it holds a ∅)."""
        return EMPTY in self.constraints

    def covers(self, x: Sequence[str]) -> bool:
        """Whether the hypothesis classifies instance ``x`` as positive."""
        return not self.is_empty and all(c == ANY or c == v for c, v in zip(self.constraints, x, strict=True))

    def more_general_or_equal(self, other: Hypothesis) -> bool:
        """Mitchell's ``>=g``: every instance ``other`` covers, this one covers too."""
        if other.is_empty:
            return True
        if self.is_empty:
            return False
        return all(a == ANY or a == b for a, b in zip(self.constraints, other.constraints, strict=True))

    def more_general(self, other: Hypothesis) -> bool:
        """Strictly more general (``>g``)."""
        return self.more_general_or_equal(other) and not other.more_general_or_equal(self)

    def format(self, ascii: bool = False) -> str:
        empty = "0" if ascii else EMPTY
        return "<" + ", ".join(empty if c == EMPTY else c for c in self.constraints) + ">"

    def __str__(self) -> str:
        return self.format()


def _generalise(h: Hypothesis, x: Sequence[str]) -> Hypothesis:
    """The minimal generalisation of ``h`` that covers ``x`` (unique for conjunctions)."""
    if h.is_empty:
        return Hypothesis(tuple(x))
    return Hypothesis(tuple(c if c == ANY or c == v else ANY for c, v in zip(h.constraints, x, strict=True)))


def _specialise(g: Hypothesis, x: Sequence[str], domains: Sequence[Sequence[str]]) -> list[Hypothesis]:
    """The minimal specialisations of ``g`` (which covers ``x``) that exclude ``x``.

    One per attribute ``g`` leaves open and per other value of it; with none (every open attribute has a
    single value), only the empty hypothesis excludes ``x``.
    """
    out = []
    for i, c in enumerate(g.constraints):
        if c == ANY:
            for v in domains[i]:
                if v != x[i]:
                    out.append(Hypothesis(g.constraints[:i] + (v,) + g.constraints[i + 1 :]))
    return out or [Hypothesis.most_specific(len(g.constraints))]


def _format_set(hs: Iterable[Hypothesis], ascii: bool = False) -> str:
    return "{" + ", ".join(h.format(ascii) for h in hs) + "}"


# ---------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class AttributeTable:
    """Categorical examples: ``rows[i][j]`` is the value of ``attributes[j]``, ``labels[i]`` the target.

    ``lines[i]`` is the line of row ``i`` in its file (for messages); ``domains[j]`` the values of attribute
    ``j`` in order of first appearance.
    """

    attributes: tuple[str, ...]
    target: str
    rows: tuple[tuple[str, ...], ...]
    labels: tuple[bool, ...]
    lines: tuple[int, ...] = ()
    source: str = "table"
    domains: tuple[tuple[str, ...], ...] = field(init=False)

    def __post_init__(self) -> None:
        if not self.lines:
            object.__setattr__(self, "lines", tuple(range(2, len(self.rows) + 2)))
        domains = tuple(tuple(dict.fromkeys(r[j] for r in self.rows)) for j in range(len(self.attributes)))
        object.__setattr__(self, "domains", domains)

    def __len__(self) -> int:
        return len(self.rows)

    def describe(self, i: int) -> str:
        """Example ``i`` for messages: its number, line and values."""
        label = "positive" if self.labels[i] else "negative"
        return f"example {i + 1} ({self.source} line {self.lines[i]}: {', '.join(self.rows[i])}; {label})"

    @classmethod
    def from_rows(
        cls,
        header: Sequence[str],
        rows: Sequence[Sequence[str]],
        positive: str | None = None,
        lines: Sequence[int] | None = None,
        source: str = "table",
    ) -> AttributeTable:
        """Build and check a table: last column the target, the others categorical attributes."""
        header = [h.strip() for h in header]
        if len(header) < 2:
            raise DataError(
                f"{source}: needs at least one attribute column and the target column, got {header}"
            )
        if len(set(header)) != len(header):
            raise DataError(f"{source}: column names repeat in the header {header}")
        lines = list(lines) if lines is not None else list(range(2, len(rows) + 2))
        clean: list[tuple[str, ...]] = []
        for row, line in zip(rows, lines, strict=True):
            values = tuple(v.strip() for v in row)
            if len(values) != len(header):
                raise DataError(
                    f"{source} line {line}: {len(values)} values for {len(header)} columns ({', '.join(header)})"
                )
            for name, v in zip(header, values, strict=True):
                if not v:
                    raise DataError(f"{source} line {line}: column '{name}' is empty: fill in every value")
                if v in (ANY, EMPTY):
                    raise DataError(
                        f"{source} line {line}: column '{name}' holds '{v}', which the hypotheses use for "
                        "'any value' / 'no value': rename that value"
                    )
            clean.append(values)
        if not clean:
            raise DataError(f"{source}: holds a header but no examples")
        for j, name in enumerate(header[:-1]):
            _check_categorical(name, [r[j] for r in clean], source)
        target = [r[-1] for r in clean]
        labels = _labels(header[-1], target, positive, source)
        return cls(tuple(header[:-1]), header[-1], tuple(r[:-1] for r in clean), labels, tuple(lines), source)


def _check_categorical(name: str, values: Sequence[str], source: str) -> None:
    numbers = []
    for v in values:
        try:
            numbers.append(float(v))
        except ValueError:
            return  # some value is a word: categorical
    distinct = sorted(set(values))
    fractional = [v for v, f in zip(values, numbers, strict=True) if not f.is_integer()]
    if fractional or len(distinct) > MAX_NUMERIC_CODES:
        example = fractional[0] if fractional else distinct[0]
        raise DataError(
            f"{source}: column '{name}' holds numbers (e.g. '{example}', {len(distinct)} distinct values), "
            "but Find-S and Candidate-Elimination need categorical values: discretise it first "
            "(e.g. into low / medium / high)"
        )


def _labels(name: str, values: Sequence[str], positive: str | None, source: str) -> tuple[bool, ...]:
    seen = list(dict.fromkeys(values))
    if positive is not None:
        if positive not in seen:
            raise DataError(
                f"{source}: the positive value '{positive}' never occurs in column '{name}' "
                f"(values: {', '.join(seen)})"
            )
        return tuple(v == positive for v in values)
    if {v.lower() for v in seen} <= set(_TRUE) | set(_FALSE):
        return tuple(v.lower() in _TRUE for v in values)
    raise DataError(
        f"{source}: the target column '{name}' has values {', '.join(seen)}, not yes/no: "
        "name the positive one (positive=VALUE, --positive VALUE)"
    )


def read_attribute_csv(path: str | Path, positive: str | None = None) -> AttributeTable:
    """Read a CSV of categorical examples (header row; last column the target)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"'{path}' does not exist: give a CSV file with a header row")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, skipinitialspace=True)
            records = [(reader.line_num, row) for row in reader if any(v.strip() for v in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read '{path}' as CSV ({e}): give a UTF-8 CSV file") from None
    if not records:
        raise DataError(f"'{path}' is empty: it needs a header row and examples")
    (_, header), body = records[0], records[1:]
    return AttributeTable.from_rows(
        header, [r for _, r in body], positive, lines=[n for n, _ in body], source=path.name
    )


# -------------------------------------------------------------------------------------------- learners


class FindS:
    """Find-S (Mitchell 1997, Table 2.3): the most specific hypothesis covering every positive example.

    After :meth:`fit`: ``hypothesis``; ``covered_negatives``, the indices of negative examples it covers
    (empty when the data is consistent with it; Find-S ignores negatives while learning).
    """

    def __init__(self) -> None:
        self.hypothesis: Hypothesis | None = None
        self.covered_negatives: list[int] = []

    def fit(self, table: AttributeTable) -> FindS:
        h = Hypothesis.most_specific(len(table.attributes))
        for x, positive in zip(table.rows, table.labels, strict=True):
            if positive and not h.covers(x):
                h = _generalise(h, x)
        self.hypothesis = h
        self.covered_negatives = [
            i for i, (x, p) in enumerate(zip(table.rows, table.labels)) if not p and h.covers(x)
        ]
        if self.covered_negatives:
            log.warning(
                "Find-S: %s covers %d negative example(s), the first %s: the data is inconsistent with any "
                "conjunction (noise, or a target concept outside the hypothesis space)",
                h,
                len(self.covered_negatives),
                table.describe(self.covered_negatives[0]),
            )
        return self

    def predict(self, x: Sequence[str]) -> bool:
        if self.hypothesis is None:
            raise DataError("FindS is not fitted: call fit(table) first")
        return self.hypothesis.covers(x)


class CandidateElimination:
    """Candidate-Elimination (Mitchell 1997, Table 2.5): the version space as its S and G boundaries.

    After :meth:`fit`: ``specific`` (S) and ``general`` (G), lists of hypotheses. Raises a DataError
    naming the example at which the version space collapses when no conjunction fits the data.
    """

    def __init__(self) -> None:
        self.specific: list[Hypothesis] = []
        self.general: list[Hypothesis] = []

    def fit(self, table: AttributeTable) -> CandidateElimination:
        n = len(table.attributes)
        s_set = [Hypothesis.most_specific(n)]
        g_set = [Hypothesis.most_general(n)]
        for i, (x, positive) in enumerate(zip(table.rows, table.labels, strict=True)):
            if positive:
                g_set = [g for g in g_set if g.covers(x)]
                new_s = []
                for s in s_set:
                    if s.covers(x):
                        new_s.append(s)
                        continue
                    h = _generalise(s, x)
                    if any(g.more_general_or_equal(h) for g in g_set):
                        new_s.append(h)
                s_set = _unique(new_s)
                s_set = [s for s in s_set if not any(s.more_general(t) for t in s_set)]
            else:
                s_set = [s for s in s_set if not s.covers(x)]
                new_g = []
                for g in g_set:
                    if not g.covers(x):
                        new_g.append(g)
                        continue
                    for h in _specialise(g, x, table.domains):
                        if any(h.more_general_or_equal(s) for s in s_set):
                            new_g.append(h)
                g_set = _unique(new_g)
                g_set = [g for g in g_set if not any(t.more_general(g) for t in g_set)]
            if not s_set or not g_set:
                side = "S" if not s_set else "G"
                raise DataError(
                    f"{table.source}: the version space collapses at {table.describe(i)}: {side} became "
                    f"empty, so no conjunctive hypothesis fits examples 1-{i + 1} (noisy data, or a target "
                    "concept outside the hypothesis space)"
                )
            log.debug("after example %d: S = %s, G = %s", i + 1, _format_set(s_set), _format_set(g_set))
        self.specific, self.general = s_set, g_set
        return self

    def predict(self, x: Sequence[str]) -> bool | None:
        """Unanimous vote of the version space (section 2.6.3): True, False, or None when it is split."""
        if not self.general:
            raise DataError("CandidateElimination is not fitted: call fit(table) first")
        if all(s.covers(x) for s in self.specific):
            return True
        if not any(g.covers(x) for g in self.general):
            return False
        return None

    def format(self, ascii: bool = False) -> str:
        return f"S = {_format_set(self.specific, ascii)}\nG = {_format_set(self.general, ascii)}"


def _unique(hs: Iterable[Hypothesis]) -> list[Hypothesis]:
    return list(dict.fromkeys(hs))
