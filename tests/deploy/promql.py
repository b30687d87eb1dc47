"""Just enough PromQL reading to check that queries name metrics that exist.

``references(expr)`` lists the metric selectors of an expression (name and the label
names its matchers use) and the label names of its ``by``/``without``/``on``/``ignoring``
/``group_*`` lists. ``exported()`` lists what the gateway process exports: the families
of ``gateway.core.metrics`` with the sample names Prometheus sees (counters ``_total``,
histograms ``_bucket``/``_sum``/``_count``), the default process/platform/GC
collectors, and ``up``, which Prometheus adds to every target.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from gateway.core import metrics

# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})

_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2", "start", "end"}
)
# Aggregations may be followed by ``by (...)`` before their parenthesis.
_AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"}
    | {"bottomk", "topk", "quantile", "limitk", "limit_ratio"}
)
_LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[a-zA-Z]*")
_MATCHER = re.compile(
    r"""\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)\s*,?"""
)


@dataclass
class References:
    """What one expression refers to."""

    selectors: list[tuple[str, frozenset[str]]] = field(default_factory=list)
    grouping_labels: set[str] = field(default_factory=set)


class PromQLError(ValueError):
    """The expression is not something this reader understands."""


def _skip_string(expr: str, i: int) -> int:
    quote = expr[i]
    i += 1
    while i < len(expr) and expr[i] != quote:
        i += 2 if expr[i] == "\\" and quote != "`" else 1
    if i >= len(expr):
        raise PromQLError(f"unterminated string in {expr!r}")
    return i + 1


def _closing(expr: str, i: int, opening: str, closing: str) -> int:
    """Index just past the bracket matching the one at ``i``, strings skipped."""
    depth = 0
    while i < len(expr):
        char = expr[i]
        if char in "\"'`":
            i = _skip_string(expr, i)
            continue
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise PromQLError(f"unbalanced {opening}{closing} in {expr!r}")


def _matcher_labels(block: str, expr: str) -> frozenset[str]:
    inner = block[1:-1].strip()
    labels = []
    pos = 0
    while pos < len(inner):
        match = _MATCHER.match(inner, pos)
        if match is None:
            raise PromQLError(f"cannot read matchers {block!r} in {expr!r}")
        labels.append(match.group(1))
        pos = match.end()
    return frozenset(labels)


def references(expr: str) -> References:
    """The metric selectors and grouping labels of a PromQL expression."""
    found = References()
    i = 0
    while i < len(expr):
        char = expr[i]
        if char.isspace():
            i += 1
        elif char in "\"'`":
            i = _skip_string(expr, i)
        elif char == "[":
            i = _closing(expr, i, "[", "]")  # range or subquery: durations only
        elif char == "$":  # a Grafana variable outside a string, e.g. ${var}
            match = re.compile(r"\$\{?\w+\}?").match(expr, i)
            i = match.end() if match else i + 1
        elif char.isdigit() or (char == "." and expr[i + 1 : i + 2].isdigit()):
            number = _NUMBER.match(expr, i)
            assert number is not None
            i = number.end()
        elif char == "{":
            raise PromQLError(f"a selector without a metric name in {expr!r}")
        elif _IDENT.match(char):
            ident = _IDENT.match(expr, i)
            assert ident is not None
            name = ident.group()
            i = ident.end()
            j = i
            while j < len(expr) and expr[j].isspace():
                j += 1
            following = expr[j : j + 1]
            if name in _LABEL_LISTS:
                if following == "(":
                    end = _closing(expr, j, "(", ")")
                    inner = expr[j + 1 : end - 1]
                    found.grouping_labels.update(
                        label.strip() for label in inner.split(",") if label.strip()
                    )
                    i = end
            elif following == "(" or name.lower() in _KEYWORDS | _AGGREGATIONS:
                pass  # a function, an aggregation or a keyword
            elif following == "{":
                end = _closing(expr, j, "{", "}")
                found.selectors.append((name, _matcher_labels(expr[j:end], expr)))
                i = end
            else:
                found.selectors.append((name, frozenset()))
        else:
            i += 1
    return found


def exported() -> dict[str, frozenset[str]]:
    """Every series name the gateway's /metrics (plus Prometheus' ``up``) can show,
    with the label names it carries."""
    names: dict[str, frozenset[str]] = {"up": TARGET_LABELS}
    ours: set[str] = set()
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        (family,) = value.describe()
        labels = frozenset(value._labelnames) | TARGET_LABELS
        ours.add(family.name)
        suffixes = {
            "counter": {"_total": labels, "_created": labels},
            "gauge": {"": labels},
            "histogram": {
                "_bucket": labels | {"le"},
                "_sum": labels,
                "_count": labels,
                "_created": labels,
            },
            "summary": {"": labels | {"quantile"}, "_sum": labels, "_count": labels},
        }[family.type]
        for suffix, carried in suffixes.items():
            names[family.name + suffix] = carried
    for family in REGISTRY.collect():  # process_*, python_* from the default collectors
        if family.name in ours:
            continue
        for sample in family.samples:
            names[sample.name] = (
                names.get(sample.name, frozenset()) | frozenset(sample.labels) | TARGET_LABELS
            )
    return names


def problems(expr: str, known: dict[str, frozenset[str]]) -> list[str]:
    """What in ``expr`` names a metric or label the gateway does not export."""
    try:
        refs = references(expr)
    except PromQLError as exc:
        return [str(exc)]
    found = []
    usable: set[str] = set(TARGET_LABELS)
    for name, labels in refs.selectors:
        if name not in known:
            found.append(f"unknown metric {name!r}")
            continue
        usable |= known[name]
        for label in sorted(labels - known[name]):
            found.append(f"{name} has no label {label!r}")
    if refs.selectors:
        for label in sorted(refs.grouping_labels - usable):
            found.append(f"no metric of this expression has the label {label!r}")
    return found
