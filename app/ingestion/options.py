"""What the caller can tell the parser about an upload."""

from __future__ import annotations

from dataclasses import dataclass

FORMATS = ("auto", "csv", "tsv", "parquet", "movielens", "adjacency")


@dataclass(frozen=True)
class ParseOptions:
    """How to read an upload; every field defaults to detection from the file itself."""

    format: str = "auto"  # "auto" | "csv" | "tsv" | "parquet" | "movielens" | "adjacency"
    user_column: str | None = None  # header name, or a 0-based index as a string such as "0"
    item_column: str | None = None
    weight_column: str | None = None
    timestamp_column: str | None = None
    user_group_column: str | None = None  # community label per user; found by header name, never by position
    item_group_column: str | None = None  # community label per item
    has_header: bool | None = None  # None = detect
    min_weight: float | None = None  # drop rows whose weight < min_weight, before merging duplicates
