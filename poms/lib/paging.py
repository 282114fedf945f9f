"""Keyset pagination: each page costs the same however deep, and rows do not shift."""

from dataclasses import dataclass


@dataclass
class Page:
    rows: list
    next_key: object  # pass back as ?after= / ?before= for the next page; None on the last page


def keyset_desc(queryset, before, size, field="id"):
    """Rows with `field` < before, largest first."""
    if before is not None:
        queryset = queryset.filter(**{f"{field}__lt": before})
    rows = list(queryset.order_by(f"-{field}")[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return Page(rows, getattr(rows[-1], field) if more else None)


def keyset_asc(queryset, after, size, field="id"):
    """Rows with `field` > after, smallest first."""
    if after is not None:
        queryset = queryset.filter(**{f"{field}__gt": after})
    rows = list(queryset.order_by(field)[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return Page(rows, getattr(rows[-1], field) if more else None)


def page_key(value):
    """A keyset paging key from a query string: a plain non-negative integer, else None (first
    page). "²".isdigit() is True but int() refuses it, hence isascii."""
    value = (value or "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else None
