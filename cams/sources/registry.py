"""One description per source: everything the readers and the landing need to know about RelayCore
usage and Auterity spans, in one place (the contract, the row's fields, its key and time, the compiled
decoder, the landing table)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table

from cams.sources import compiled, contracts
from cams.warehouse import schema as t


@dataclass(frozen=True)
class SourceDescription:
    name: str
    parse: Callable[[Mapping[str, Any]], dict[str, Any]]  # the contract in Python: a record or RecordError
    decode: Callable[[bytes], tuple[Any, ...] | None]  # the compiled fast path; None hands the line to `parse`
    fields: tuple[str, ...]  # a landing row travels as a tuple in this order, the key first
    key: str  # deduplicated on this: the latest copy of a key wins
    time: str  # the UTC day of this field is the row's partition
    table: Table  # where the landing puts the day's rows

    @property
    def time_at(self) -> int:
        return self.fields.index(self.time)


SOURCES = {
    contracts.RELAYCORE: SourceDescription(
        contracts.RELAYCORE,
        contracts.parse_relaycore,
        compiled.relaycore_row,
        contracts.RELAYCORE_FIELDS,
        "request_id",
        "timestamp",
        t.relaycore_usage,
    ),
    contracts.AUTERITY: SourceDescription(
        contracts.AUTERITY,
        contracts.parse_auterity,
        compiled.auterity_row,
        contracts.AUTERITY_FIELDS,
        "span_id",
        "start_time",
        t.auterity_spans,
    ),
}


def describe(source: str) -> SourceDescription:
    return SOURCES[source]
