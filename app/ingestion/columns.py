"""Which field of a row is the user, the item, the weight, the timestamp and the group labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.ingestion.errors import IngestError
from app.ingestion.options import ParseOptions

# Common header names per role, matched case-insensitively, in order of preference.
KNOWN_NAMES: dict[str, tuple[str, ...]] = {
    "user": ("userid", "user_id", "user", "uid"),
    "item": ("itemid", "item_id", "movieid", "artistid", "artist_id", "item", "iid"),
    "weight": (
        "rating",
        "weight",
        "count",
        "plays",
        "playcount",
        "score",
        "qty",
        "quantity",
        "clicks",
        "value",
    ),
    "timestamp": ("timestamp", "ts", "time", "datetime"),
    "user_group": ("user_group", "usergroup", "user_community"),
    "item_group": ("item_group", "itemgroup", "item_community", "group"),
}
ALL_KNOWN_NAMES = frozenset(name for names in KNOWN_NAMES.values() for name in names)
ROLES = ("user", "item", "weight", "timestamp")
# Optional labels of each user's / item's planted community; only ever found by name or given explicitly.
GROUP_ROLES = ("user_group", "item_group")


@dataclass(frozen=True)
class Column:
    """One used field: its position and how the user knows it (header name or index)."""

    index: int
    label: str  # header name, or the 0-based index as a string without a header
    named: bool  # True when label is a header name

    def stat(self) -> str | int:
        """How stats report the column: the name, or the index when the file has no header."""
        return self.label if self.named else self.index


@dataclass(frozen=True)
class ColumnMap:
    """The columns used for each role; all but user and item are optional."""

    user: Column
    item: Column
    weight: Column | None
    timestamp: Column | None
    user_group: Column | None = None
    item_group: Column | None = None
    ignored: tuple[str | int, ...] = ()  # fields no role uses, as stats report them

    def by_role(self) -> dict[str, Column | None]:
        """Columns keyed by role name (the group roles only when the file has a group column)."""
        roles = {"user": self.user, "item": self.item, "weight": self.weight, "timestamp": self.timestamp}
        if self.user_group is not None or self.item_group is not None:
            roles |= {"user_group": self.user_group, "item_group": self.item_group}
        return roles

    def stats(self) -> dict[str, str | int | None]:
        """JSON-friendly description of the mapping."""
        return {role: (col.stat() if col else None) for role, col in self.by_role().items()}

    def report(self) -> dict[str, Any]:
        """What an upload's answer says beyond the mapping: the unused fields, and a note when that matters."""
        notes = []
        if self.weight is None and self.ignored:
            names = ", ".join(repr(label) for label in self.ignored)
            notes.append(
                f"no weight column was recognised, so every interaction weighs 1; {names} "
                f"{'was' if len(self.ignored) == 1 else 'were'} ignored: give weight_column to use one "
                f"(names recognised: {', '.join(KNOWN_NAMES['weight'])})"
            )
        return {"ignored_columns": list(self.ignored), "notes": notes}


def describe(role: str) -> str:
    """How messages name a role: "user group" for "user_group"."""
    return role.replace("_", " ")


def resolve_columns(names: Sequence[str] | None, n_fields: int, options: ParseOptions) -> ColumnMap:
    """Map roles to columns: explicit options first, then header names, then positions."""
    requested = {
        "user": options.user_column,
        "item": options.item_column,
        "weight": options.weight_column,
        "timestamp": options.timestamp_column,
        "user_group": options.user_group_column,
        "item_group": options.item_group_column,
    }
    chosen: dict[str, int] = {}
    for role, spec in requested.items():
        if spec is not None:
            chosen[role] = _find_explicit(spec, role, names, n_fields)
    lowered = [name.strip().lower() for name in names] if names is not None else None
    if lowered is not None:
        _find_known(ROLES, lowered, chosen)
    else:
        # No header: the conventional order user, item, weight, timestamp.
        for position, role in enumerate(ROLES):
            if role not in chosen and position < n_fields and position not in chosen.values():
                chosen[role] = position
    # User and item are required: fall back to the first unclaimed fields. Weight and timestamp
    # are not guessed under a header, since an unnamed column (price, category) is rarely a confidence.
    for role in ("user", "item"):
        if role not in chosen:
            free = [i for i in range(n_fields) if i not in chosen.values()]
            if not free:
                raise _missing(role, names, chosen, n_fields)
            chosen[role] = free[0]
    # Group labels by name last, so a lone "group" column still serves as the item when nothing else can.
    if lowered is not None:
        _find_known(GROUP_ROLES, lowered, chosen)
    _check_distinct(chosen, names)

    def optional(role: str) -> Column | None:
        index = chosen.get(role)
        return _column(index, names) if index is not None else None

    used = set(chosen.values())
    return ColumnMap(
        user=_column(chosen["user"], names),
        item=_column(chosen["item"], names),
        weight=optional("weight"),
        timestamp=optional("timestamp"),
        user_group=optional("user_group"),
        item_group=optional("item_group"),
        ignored=tuple(_column(i, names).stat() for i in range(n_fields) if i not in used),
    )


def _missing(role: str, names: Sequence[str] | None, chosen: dict[str, int], n_fields: int) -> IngestError:
    """No field is left for a required role: say which role took each field, and how to name the missing one."""
    if n_fields < 2:
        return IngestError(f"each line needs at least two fields (user and item); found {n_fields}")
    taken = ", ".join(
        f"{_column(index, names).label!r} as the {describe(other)}"
        for other, index in sorted(chosen.items(), key=lambda kv: kv[1])
    )
    return IngestError(
        f"there is no {role} column: the file's {n_fields} columns are taken ({taken}); each line needs a user "
        f"and an item. Name the {role} column (e.g. {', '.join(KNOWN_NAMES[role][:4])}) or give {role}_column"
    )


def _find_known(roles: Sequence[str], lowered: list[str], chosen: dict[str, int]) -> None:
    """Claim, for each role not chosen yet, the first unclaimed column with one of its known names."""
    for role in roles:
        if role in chosen:
            continue
        for candidate in KNOWN_NAMES[role]:
            if candidate in lowered and lowered.index(candidate) not in chosen.values():
                chosen[role] = lowered.index(candidate)
                break


def _column(index: int, names: Sequence[str] | None) -> Column:
    if names is None:
        return Column(index, str(index), named=False)
    return Column(index, names[index], named=True)


def _find_explicit(spec: str, role: str, names: Sequence[str] | None, n_fields: int) -> int:
    """Resolve a user-given column: exact name, then case-insensitive name, then 0-based index."""
    spec = str(spec)
    role = describe(role)
    if names is not None:
        if spec in names:
            return list(names).index(spec)
        lowered = [name.lower() for name in names]
        if lowered.count(spec.lower()) == 1:
            return lowered.index(spec.lower())
    if spec.strip().isdigit():
        index = int(spec)
        if index < n_fields:
            return index
        raise IngestError(
            f"the {role} column index {index} is out of range: the file has {n_fields} columns "
            f"(indices 0 to {n_fields - 1})",
            column=spec,
        )
    if names is None:
        raise IngestError(
            f"the file has no header line, so the {role} column {spec!r} cannot be found by name; "
            f"give a 0-based index (0 to {n_fields - 1}) or set has_header",
            column=spec,
        )
    available = ", ".join(repr(name) for name in names)
    raise IngestError(f"there is no {role} column {spec!r}; the file's columns are {available}", column=spec)


def _check_distinct(chosen: dict[str, int], names: Sequence[str] | None) -> None:
    seen: dict[int, str] = {}
    for role, index in chosen.items():
        if index in seen:
            label = repr(names[index]) if names is not None else str(index)
            raise IngestError(
                f"column {label} cannot be both the {describe(seen[index])} and the {describe(role)} column"
            )
        seen[index] = role
