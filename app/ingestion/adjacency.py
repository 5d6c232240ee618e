"""Adjacency lists ("user item item ..." per line), tokenised with numpy a block of lines at a time."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from app.ingestion.diagnose import first_invalid_utf8_line
from app.ingestion.errors import IngestError
from app.ingestion.formats import Layout
from app.ingestion.options import ParseOptions
from app.ingestion.readers import RawInteractions

BLOCK = 16 << 20  # bytes per block: bounds the per-token scratch arrays (~60 bytes a token)
_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[list(b" \t\r\n\v\f")] = True
_LF, _CR = ord("\n"), ord("\r")


def read_adjacency(path: str | os.PathLike[str], layout: Layout, options: ParseOptions) -> RawInteractions:
    """One interaction (weight 1) per item token; the first token of each line is the user."""
    chosen = [
        options.user_column,
        options.item_column,
        options.weight_column,
        options.timestamp_column,
        options.user_group_column,
        options.item_group_column,
    ]
    if any(spec is not None for spec in chosen):
        raise IngestError(
            "an adjacency list ('user item item ...' per line) has no columns to choose; "
            "leave the column options empty or upload a table"
        )
    users: list[pa.Array] = []
    items: list[pa.Array] = []
    item_lines: list[np.ndarray] = []  # 1-based line of each interaction, for error messages
    n_lines = lonely = 0
    header_pending = layout.has_header
    for data, line_base in _blocks(path):
        tokens, line = _tokenise(data, path)
        if header_pending and len(line):
            # The header is the first line holding tokens: a prefix of this block's tokens.
            skip = int(np.searchsorted(line, line[0], side="right"))
            tokens, line, header_pending = tokens.slice(skip), line[skip:], False
        if not len(line):
            continue
        first = np.empty(len(line), dtype=bool)  # True for the user token that opens a line
        first[0] = True
        np.not_equal(line[1:], line[:-1], out=first[1:])
        user_tokens = np.flatnonzero(first)
        item_tokens = np.flatnonzero(~first)
        owner = user_tokens[np.cumsum(first)[item_tokens] - 1]  # the user token of each item's line
        # A user token followed directly by the next line's user token (or nothing) has no items.
        lonely += int(np.count_nonzero(np.diff(user_tokens, append=len(first)) == 1))
        n_lines += len(user_tokens)
        users.append(tokens.take(pa.array(owner)))
        items.append(tokens.take(pa.array(item_tokens)))
        item_lines.append((line[item_tokens] + line_base + 1).astype(np.int32))
    if not n_lines:
        raise IngestError("the file is empty")
    if not sum(len(chunk) for chunk in items):
        raise IngestError("no interactions: every line holds a user id but no item ids")
    lines = np.concatenate(item_lines)
    return RawInteractions(
        users=_chunked(users),
        items=_chunked(items),
        weights=None,
        timestamps=None,
        columns={"user": "first token", "item": "remaining tokens", "weight": None, "timestamp": None},
        labels={},
        locate=lambda row: {"line": int(lines[row])},
        extra={"lines_read": n_lines, "users_without_items": lonely},
    )


def _blocks(path: str | os.PathLike[str]) -> Iterator[tuple[np.ndarray, int]]:
    """(bytes of whole lines, number of lines before them) in blocks of about BLOCK bytes."""
    carry = np.empty(0, dtype=np.uint8)
    line_base = 0
    with open(path, "rb") as f:
        if f.read(3) != b"\xef\xbb\xbf":
            f.seek(0)  # no UTF-8 byte order mark; when there is one, it is not part of the first user id
        while True:
            chunk = np.frombuffer(f.read(BLOCK), dtype=np.uint8)
            at_end = not len(chunk)
            data = np.concatenate([carry, chunk]) if len(carry) else chunk
            cut = len(data) if at_end else _last_line_end(data)
            block, carry = data[:cut], data[cut:]
            if len(block):
                yield block, line_base
                line_base += int(np.count_nonzero(_newlines(block)))
            if at_end:
                return


def _last_line_end(data: np.ndarray) -> int:
    """Index just past the last line ending that cannot be the CR half of a CRLF split by the cut."""
    lf = np.flatnonzero(data[::-1] == _LF)
    if len(lf):
        return len(data) - int(lf[0])
    cr = np.flatnonzero(data[-2::-1] == _CR)  # never the final byte: its LF may be in the next read
    return len(data) - 1 - int(cr[0]) if len(cr) else 0


def _newlines(data: np.ndarray) -> np.ndarray:
    """Lines end at LF, or at a CR not followed by LF (old Mac files), as Arrow and diagnose.py count."""
    newline: np.ndarray = data == _LF
    newline[:-1] |= (data[:-1] == _CR) & ~newline[1:]
    newline[-1:] |= data[-1:] == _CR
    return newline


def _tokenise(data: np.ndarray, path: str | os.PathLike[str]) -> tuple[pa.Array, np.ndarray]:
    """(every whitespace-separated token as one string array, 0-based line of each within the block)."""
    token = ~_WHITESPACE[data]
    # +1 where a token starts, -1 one past where it ends.
    edges = np.diff(token.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    lengths = np.flatnonzero(edges == -1) - starts
    del edges
    line = np.searchsorted(np.flatnonzero(_newlines(data)), starts, side="right")
    offsets = np.zeros(len(starts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    # Tokens are contiguous once the whitespace is squeezed out, so the offsets index that copy.
    large = offsets[-1] > np.iinfo(np.int32).max
    tokens = pa.Array.from_buffers(
        pa.large_string() if large else pa.string(),
        len(starts),
        [None, pa.py_buffer(offsets if large else offsets.astype(np.int32)), pa.py_buffer(data[token])],
    )
    try:
        tokens.validate(full=True)
    except pa.ArrowInvalid:
        error = first_invalid_utf8_line(path, Layout("adjacency"))
        raise (error or IngestError("the file is not valid UTF-8 text")) from None
    return tokens, line


def _chunked(chunks: list[pa.Array]) -> pa.ChunkedArray:
    if any(pa.types.is_large_string(chunk.type) for chunk in chunks):
        chunks = [chunk.cast(pa.large_string()) for chunk in chunks]
    return pa.chunked_array(chunks, type=chunks[0].type)
