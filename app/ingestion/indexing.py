"""Dense indexing of string ids and merging of duplicate (user, item) pairs, vectorised."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.ingestion.convert import MAX_WEIGHT
from app.ingestion.errors import IngestError, RowError

# numpy unicode arrays pad every id to the longest (4 bytes a character): cap what that may cost.
MAX_ID_ARRAY_BYTES = 1 << 30


@dataclass(frozen=True)
class Indexed:
    """Merged interactions over dense indices."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    users: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    timestamps: np.ndarray | None
    duplicates_merged: int


def encode(ids: pa.ChunkedArray, role: str, what: str = "ids") -> tuple[np.ndarray, np.ndarray]:
    """(int32 code per row, numpy unicode id per code) with codes in order of first appearance.

    `role` and `what` name the values in errors: "user" and "ids", or "item group" and "labels".
    """
    # Arrow's hash kernel runs over all chunks with one memo table, so every chunk shares the
    # final dictionary and codes follow first appearance.
    encoded = ids.dictionary_encode()
    dictionary = encoded.chunk(0).dictionary
    codes = np.concatenate([np.asarray(chunk.indices.to_numpy(), dtype=np.int32) for chunk in encoded.chunks])
    return codes, _to_unicode(dictionary, f"{role} {what}")


def merge_duplicates(
    user_codes: np.ndarray,
    user_ids: np.ndarray,
    item_codes: np.ndarray,
    item_ids: np.ndarray,
    weights: np.ndarray,
    timestamps: np.ndarray | None,
) -> Indexed:
    """Merge duplicate (user, item) pairs of encoded rows (see encode): weights summed, timestamps max."""
    keys = user_codes.astype(np.int64) * len(item_ids) + item_codes
    pair = pa.array(keys).dictionary_encode()  # hash-based: linear time, keeps first-appearance order
    unique_keys = np.asarray(pair.dictionary.to_numpy(), dtype=np.int64)
    merged = len(keys) - len(unique_keys)
    if merged:
        codes = np.asarray(pair.indices.to_numpy(), dtype=np.int64)
        weights = np.bincount(codes, weights=weights, minlength=len(unique_keys))
        huge = weights > MAX_WEIGHT
        if huge.any():  # each weight fits in float32 (to_weights), but their sum may not
            row = int(np.argmax(codes == np.argmax(huge)))
            raise RowError(
                row,
                "weight",
                f"the weights of this (user, item) pair and its duplicates add up to more than {MAX_WEIGHT:g}",
            )
        if timestamps is not None:
            latest = np.full(len(unique_keys), np.iinfo(np.int64).min, dtype=np.int64)
            np.maximum.at(latest, codes, timestamps)
            timestamps = latest
        user_codes = (unique_keys // len(item_ids)).astype(np.int32)
        item_codes = (unique_keys % len(item_ids)).astype(np.int32)
    return Indexed(
        user_ids=user_ids,
        item_ids=item_ids,
        users=user_codes,
        items=item_codes,
        weights=weights.astype(np.float32),
        timestamps=timestamps,
        duplicates_merged=merged,
    )


def _to_unicode(dictionary: pa.Array, what: str) -> np.ndarray:
    longest = pc.max(pc.utf8_length(dictionary)).as_py() or 1
    if len(dictionary) * longest * 4 > MAX_ID_ARRAY_BYTES:
        noun = what.rsplit(" ", 1)[-1]
        raise IngestError(
            f"the {what} are too long to hold: {len(dictionary):,} distinct {noun} padded to the longest "
            f"({longest:,} characters) would need {len(dictionary) * longest * 4 / 2**30:.1f} GiB; "
            f"use shorter {what} (at most {MAX_ID_ARRAY_BYTES // (4 * len(dictionary)):,} characters)"
        )
    return np.asarray(dictionary.to_numpy(zero_copy_only=False), dtype=f"<U{longest}")
