"""Segments: the log's finished turns, SEGMENT_TURNS to an object, for reading.

A page of 50 messages is 25 turn objects; read as segments it is three objects, and an
export of 10,000 turns is 1,000 instead of 10,000. Each GET costs the same few
milliseconds of CPU whatever its size, so fewer, larger objects is what makes long
histories cheap to read.

The per-turn objects stay the source of truth and the write path; a segment is a copy,
made by a reader that had to read a whole block of turns anyway. Block b holds turns
b*S+1 .. (b+1)*S and is copied only once all of them are committed (committed turns are
never rewritten), and only if every entry agrees with its turn row (seq and job id). A
segment is one PUT of a whole object, so a crash mid-way leaves it written whole or not
at all; a missing or disagreeing segment is read around (and written again) from the
per-turn objects. Segments live under the conversation's prefix, so deleting the
conversation deletes them; the consistency checker looks only at `turns/` keys.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable

from shared.storage import LogStore, StorageUnavailable

log = logging.getLogger(__name__)

SEGMENT_TURNS = 10  # small, so the unfinished block at a conversation's end costs at most 9 GETs
VERSION = 1


def block_of(seq: int) -> int:
    return (seq - 1) // SEGMENT_TURNS


def segment_key(prefix: str, block: int) -> str:
    return f"{prefix}segments/{block * SEGMENT_TURNS + 1:010d}.json"


def _agrees(segment: dict | None, block: int, rows: Iterable) -> dict[int, dict] | None:
    """The segment's entries by seq, if it is this block's and matches the turn rows."""
    if not isinstance(segment, dict) or segment.get("version") != VERSION:
        return None
    entries = {turn.get("seq"): turn for turn in segment.get("turns", [])}
    if sorted(entries) != list(range(block * SEGMENT_TURNS + 1, (block + 1) * SEGMENT_TURNS + 1)):
        return None
    if any(entries[row.seq].get("job_id") != str(row.job_id) for row in rows):
        return None
    return entries


def read_entries(store: LogStore, prefix: str, turn_count: int, rows: list, ahead: int,
                 block_rows: Callable[[list[int]], list]) -> tuple[dict[int, dict | None], int]:
    """The log entry of each turn row (seq, job_id, log_key), by seq, and how many segments
    were written. Whole committed blocks come from their segment; a block without a good
    one is read turn by turn through `block_rows(blocks)` (every row of those blocks) and
    its segment written; the unfinished last block is always read turn by turn."""
    complete = turn_count // SEGMENT_TURNS
    by_block: dict[int, list] = {}
    loose = []
    for row in rows:
        (by_block.setdefault(block_of(row.seq), []) if block_of(row.seq) < complete else loose).append(row)
    blocks = sorted(by_block)
    keys = [segment_key(prefix, block) for block in blocks] + [row.log_key for row in loose]
    fetched = list(store.get_many(keys, ahead))
    found: dict[int, dict | None] = {row.seq: entry for row, entry in zip(loose, fetched[len(blocks):])}
    missing = []
    for block, segment in zip(blocks, fetched):
        entries = _agrees(segment, block, by_block[block])
        if entries is None:
            missing.append(block)
        else:
            found.update((row.seq, entries[row.seq]) for row in by_block[block])
    if not missing:
        return found, 0
    whole = block_rows(missing)
    entries = dict(zip((row.seq for row in whole), store.get_many([row.log_key for row in whole], ahead)))
    found.update((row.seq, entries.get(row.seq)) for block in missing for row in by_block[block])
    return found, _write(store, prefix, missing, whole, entries)


def _write(store: LogStore, prefix: str, blocks: list[int], rows: list, entries: dict[int, dict | None]) -> int:
    """Segments for those blocks whose every entry is present and agrees with its row."""
    segments = []
    for block in blocks:
        mine = [row for row in rows if block_of(row.seq) == block]
        turns = [entries.get(row.seq) for row in mine]
        if len(mine) != SEGMENT_TURNS or any(
                turn is None or turn.get("seq") != row.seq or turn.get("job_id") != str(row.job_id)
                for row, turn in zip(mine, turns)):
            log.warning("not copying turns %s.. of %s into a segment: an entry is missing or not its turn's",
                        block * SEGMENT_TURNS + 1, prefix)
            continue
        segments.append((segment_key(prefix, block), {"version": VERSION, "turns": turns}))
    try:
        store.put_many(segments)
    except StorageUnavailable as error:  # the read is answered anyway; a later one writes them
        log.warning("could not write segments of %s: %s", prefix, error)
        return 0
    return len(segments)
