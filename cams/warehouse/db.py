"""Engines, migrations and the two write paths every asset uses: replace a partition, append rows.

`replace_rows` deletes a partition's window and inserts its new rows in one transaction, so a
re-run replaces a day and two runs of one day cannot double-count. PostgreSQL takes rows through
COPY (psycopg 3 `cursor.copy()`), SQLite through executemany, both in bounded chunks.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Integer, Table, create_engine, delete, event, select
from sqlalchemy.sql.elements import ColumnElement

CHUNK_ROWS = 20_000
COUNTED = {"preserve_rowcount": True}  # an INSERT … SELECT's rowcount is -1 through SQLAlchemy without it
# Rows per chunk of the day-sized reads. Measured on a 2M-request day (cost stage alone, PostgreSQL):
# 180k-row chunks peaked at 0.85 GiB, 50k at 0.37 GiB, 25k at 0.29 GiB, in the same time.
FRAME_ROWS = 50_000
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def normalize_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here, whatever SQLAlchemy's default driver is."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()
            # numpy's rint (ties to even) for costing in SQL; SQLite's round() breaks ties away from zero
            dbapi_conn.create_function("rint", 1, _rint, deterministic=True)

        return engine
    return create_engine(url, pool_pre_ping=True)


def _rint(x: float | None) -> float | None:
    return None if x is None else float(round(x))


def alembic_config(engine_or_conn: Engine | Connection | None = None) -> Any:
    from alembic.config import Config  # imported here: reading the warehouse should not pay for alembic

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine_or_conn is not None:
        url = engine_or_conn.engine.url if isinstance(engine_or_conn, Connection) else engine_or_conn.url
        cfg.set_main_option("sqlalchemy.url", url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the warehouse schema to the newest revision (idempotent, safe to call every run)."""
    from alembic import command

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two runs starting at once must not both create tables.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(724231)")
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def chunks(rows: Iterable[Any], size: int = CHUNK_ROWS) -> Iterator[list[Any]]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


def insert_rows(conn: Connection, table: Table, rows: Iterable[Mapping[str, Any]]) -> int:
    """Bulk insert on the caller's transaction: COPY on PostgreSQL, executemany elsewhere."""
    n = 0
    cols = [c.name for c in table.columns if not (c.autoincrement is True and c.primary_key)]
    for batch in chunks(rows):
        if conn.dialect.name == "postgresql":
            _copy(conn, table, cols, batch)
        else:
            conn.execute(table.insert(), [{c: r.get(c) for c in cols} for r in batch])
        n += len(batch)
    return n


def _copy(conn: Connection, table: Table, cols: Sequence[str], batch: list[Mapping[str, Any]]) -> None:
    copy_text(conn, table, cols, ([r.get(c) for c in cols] for r in batch))


def copy_text(conn: Connection, table: Table, cols: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """COPY value rows in PostgreSQL's text format: psycopg formats each value by its Python type."""
    dbapi = conn.connection.driver_connection
    assert dbapi is not None
    col_sql = ", ".join(f'"{c}"' for c in cols)
    with dbapi.cursor() as cur, cur.copy(f'COPY "{table.name}" ({col_sql}) FROM STDIN') as cp:
        for r in rows:
            cp.write_row(r)


_TEXT_OID = 25
_CHAR_OIDS = {1043, 1042, 25}  # varchar, bpchar, text: the same bytes on the wire


def copy_binary(conn: Connection, table: Table, cols: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """COPY value rows in PostgreSQL's binary format: nothing is formatted as text and parsed back.

    Values must be of the columns' Python types (int, Decimal for numeric, date, aware datetime).
    """
    dbapi = conn.connection.driver_connection
    assert dbapi is not None
    oids = dict(
        conn.exec_driver_sql(
            "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = to_regclass(%(t)s) AND attnum > 0",
            {"t": f'"{table.name}"'},
        ).all()
    )
    types = [_TEXT_OID if oids[c] in _CHAR_OIDS else oids[c] for c in cols]
    col_sql = ", ".join(f'"{c}"' for c in cols)
    with dbapi.cursor() as cur, cur.copy(f'COPY "{table.name}" ({col_sql}) FROM STDIN (FORMAT BINARY)') as cp:
        cp.set_types(types)
        for r in rows:
            cp.write_row(r)


def insert_new_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert rows whose primary key is not there yet; others are left as they are (idempotent appends)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    for batch in chunks(rows):
        conn.execute(insert(table).on_conflict_do_nothing(), batch)


@contextmanager
def temporary(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> Iterator[Table]:
    """`table` (declared with prefixes=["TEMPORARY"]) created on the caller's connection with `rows`, and
    dropped after: a small lookup (rates, choices) the database joins a day of requests to. After an error
    it is left to the rollback (a statement on an aborted transaction would hide the error)."""
    table.drop(conn, checkfirst=True)  # left by a failed caller on a pooled connection
    table.create(conn)
    if rows:
        conn.execute(table.insert(), list(rows))
    yield table
    table.drop(conn, checkfirst=True)


def lock_for_replace(conn: Connection, table: Table) -> None:
    """Serialize delete-then-insert writers of `table` until the caller's transaction ends.

    Without it two PostgreSQL transactions can both delete the old rows, and the second one's insert
    then collides with (or duplicates) the first one's. SQLite serializes writers by itself.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f'LOCK TABLE "{table.name}" IN SHARE ROW EXCLUSIVE MODE')


def sync_config_rows(engine: Engine, table: Table, rows: Sequence[dict[str, Any]], content: str) -> dict[str, int]:
    """cams.yaml is the truth for the rows it owns (`source` 'yaml', keyed by `id`): upsert `rows`
    (each with id, source, created_at, updated_at), drop YAML rows no longer listed, leave the rows
    written through the API alone; an id in both is owned by YAML. A row whose `content` column did not
    change keeps its times. Returns how many changed and how many were removed."""
    with engine.begin() as conn:
        lock_for_replace(conn, table)
        c = table.c
        existing = {r.id: r for r in conn.execute(select(c.id, c.source, c.created_at, c[content]))}
        ids = [r["id"] for r in rows]
        removed = conn.execute(delete(table).where(c.source == "yaml", c.id.not_in(ids))).rowcount
        changed = []
        for row in rows:
            old = existing.get(row["id"])
            if old is not None:
                if old.source == "yaml" and getattr(old, content) == row[content]:
                    continue
                row = {**row, "created_at": old.created_at}
            changed.append(row)
        conn.execute(delete(table).where(c.id.in_([r["id"] for r in changed])))
        insert_rows(conn, table, changed)
    return {"changed": len(changed), "removed": int(removed or 0)}


class WriteBehind:
    """Writes on `conn` run in one background thread, in order, while the caller works on the next chunk.

    PostgreSQL ingests a COPY in its own process, so the two cores work at once instead of taking
    turns. At most two writes wait (two chunks in memory). SQLite connections belong to their thread:
    there, writes run inline. Use as a context manager: leaving it waits for every write.
    """

    def __init__(self, conn: Connection) -> None:
        self._inline = conn.dialect.name != "postgresql"
        self._pool = None if self._inline else ThreadPoolExecutor(1, thread_name_prefix="cams-write")
        self._pending: list[Future[Any]] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._pool is None:
            fn(*args)
            return
        while len(self._pending) >= 2:
            self._pending.pop(0).result()
        self._pending.append(self._pool.submit(fn, *args))

    def wait(self) -> None:
        """Every submitted write done; the first error raised here."""
        pending, self._pending = self._pending, []
        errors = [f.exception() for f in pending]
        for exc in errors:
            if exc is not None:
                raise exc

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        try:
            if exc_type is None:
                self.wait()
            else:  # the caller failed: let the writes finish (they use the connection), keep its error
                for f in self._pending:
                    f.exception()
                self._pending = []
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)


def tune_for_a_day(conn: Connection) -> None:
    """For the rest of the caller's transaction: a day's sorts and hashes stay in memory, and no JIT
    (compiling costs more than it saves on these whole-day scans). PostgreSQL only."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL work_mem = '256MB'")
        conn.exec_driver_sql("SET LOCAL jit = off")


def replace_rows(
    conn: Connection, table: Table, where: ColumnElement[bool], rows: Iterable[Mapping[str, Any]]
) -> tuple[int, int]:
    """Delete what `where` selects and insert `rows`, on the caller's transaction.

    Returns (deleted, inserted). On PostgreSQL the table is locked first so two concurrent runs
    of the same partition serialize instead of both inserting.
    """
    lock_for_replace(conn, table)
    deleted = conn.execute(table.delete().where(where)).rowcount
    inserted = insert_rows(conn, table, rows)
    return deleted, inserted


def _integer_columns_as_int(table: Table, frame: Any) -> Any:
    """NaN turns integer columns into floats in pandas; COPY needs "1", not "1.0"."""
    fixes = {
        c.name: "Int64"
        for c in table.columns
        if c.name in frame.columns and isinstance(c.type, Integer) and frame[c.name].dtype.kind == "f"
    }
    return frame.astype(fixes) if fixes else frame


def read_frame(conn: Connection, stmt: Any) -> Any:
    """A SELECT as a pandas DataFrame, without building a SQLAlchemy Row per row.

    psycopg already returns typed values (Decimal, date, aware datetime), so on PostgreSQL the DBAPI's
    tuples go straight to pandas; SQLite needs SQLAlchemy's conversions (it stores dates as text).
    """
    import pandas as pd

    result = conn.execute(stmt)
    cols = list(result.keys())
    pg = conn.dialect.name == "postgresql"
    rows = result.cursor.fetchall() if pg else [tuple(r) for r in result]  # type: ignore[attr-defined]
    return pd.DataFrame.from_records(rows, columns=cols, coerce_float=False)


@cache
def arrow() -> Any:
    """pyarrow, allocating through jemalloc (the system allocator where the wheel has no jemalloc).

    pyarrow's default pool on Linux wheels is mimalloc, which kept ~30 MiB more resident per
    million rows converted to pandas, so the memory of a day-sized stage grew with the day; with
    jemalloc it stays flat and goes back to the system when the stage ends (measured, 2M rows).
    pandas' string columns allocate from this pool too. An operator's ARROW_DEFAULT_MEMORY_POOL
    (jemalloc, mimalloc or system) is left in force.
    """
    import pyarrow as pa

    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return pa
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:
        pool = pa.system_memory_pool()
    pa.set_memory_pool(pool)
    return pa


def read_frames(conn: Connection, stmt: Any, chunk_rows: int = FRAME_ROWS) -> Iterator[Any]:
    """A SELECT as DataFrames of about `chunk_rows` rows, streamed: memory holds a chunk, not the day.

    For the stages that read a whole day. On PostgreSQL the rows come through `COPY (query) TO
    STDOUT` on a connection of their own, parsed by pyarrow's CSV reader: the server runs the query
    while Python works on the previous chunk, and `conn` stays free for the chunks' writes. Numbers
    come back as int64 / float64 (not Decimal): these stages compute in floats.
    """
    import pandas as pd

    arrow()
    if conn.dialect.name == "postgresql":
        yield from _copy_frames(conn, stmt, chunk_rows)
        return
    result = conn.execute(stmt)
    cols = list(result.keys())
    try:
        while rows := result.fetchmany(chunk_rows):
            yield pd.DataFrame.from_records([tuple(r) for r in rows], columns=cols, coerce_float=False)
    finally:
        result.close()


class _CopyReader(io.RawIOBase):
    """The data of a psycopg COPY TO as a readable stream (what pyarrow's CSV reader reads)."""

    def __init__(self, copy: Any) -> None:
        self._blocks = iter(copy)
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._buf = memoryview(block)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _arrow_type(sa_type: Any) -> Any:
    import pyarrow as pa
    from sqlalchemy import Boolean, Date, DateTime, Float, Numeric

    if isinstance(sa_type, Boolean):
        return pa.bool_()
    if isinstance(sa_type, Integer):
        return pa.int64()
    if isinstance(sa_type, Float | Numeric):
        return pa.float64()
    if isinstance(sa_type, DateTime):
        return pa.timestamp("us", tz="UTC")
    if isinstance(sa_type, Date):
        return pa.date32()
    return pa.string()


def _copy_frames(conn: Connection, stmt: Any, chunk_rows: int) -> Iterator[Any]:
    import pyarrow.csv as pcsv

    pa = arrow()

    sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    types = {c.name: _arrow_type(c.type) for c in stmt.selected_columns}
    convert = pcsv.ConvertOptions(
        column_types=types,
        strings_can_be_null=True,  # COPY writes NULL as an empty field and '' as ""
        quoted_strings_can_be_null=False,
        true_values=["t"],
        false_values=["f"],
    )
    with conn.engine.connect() as reader:
        dbapi = reader.connection.driver_connection
        assert dbapi is not None
        reader.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
        tune_for_a_day(reader)
        with dbapi.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER true)") as copy:
            stream = io.BufferedReader(_CopyReader(copy), buffer_size=1 << 20)
            # Blocks far smaller than a chunk, so a chunk is about chunk_rows rows (a 16 MiB block is ~90k)
            csv = pcsv.open_csv(stream, read_options=pcsv.ReadOptions(block_size=2 << 20), convert_options=convert)
            pending: list[Any] = []
            held = 0
            for batch in csv:
                pending.append(batch)
                held += batch.num_rows
                if held >= chunk_rows:
                    yield pa.Table.from_batches(pending, csv.schema).to_pandas()
                    pending, held = [], 0
                    pa.default_memory_pool().release_unused()  # lowers the stage's peak (measured)
            if held:
                yield pa.Table.from_batches(pending, csv.schema).to_pandas()
        reader.rollback()


def _timestamps_as_text(frame: Any) -> Any:
    """ISO text for datetime columns, formatted by numpy in C: pandas' own CSV formatting of aware
    timestamps is the slowest part of a COPY (7 s of 100,000 rows' 35 s, profiled)."""
    import numpy as np
    import pandas as pd

    fixes = {}
    for c in frame.columns:
        s = frame[c]
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            naive = s.dt.tz_convert("UTC").dt.tz_localize(None)
        elif s.dtype.kind == "M":
            naive = s
        else:
            continue
        text = np.datetime_as_string(naive.to_numpy(dtype="datetime64[us]"), unit="us")
        fixes[c] = pd.Series(np.char.add(text, "+00:00"), index=s.index).where(s.notna(), None)
    return frame.assign(**fixes) if fixes else frame


def _arrow_csv(frame: Any) -> Any:
    """The frame as PostgreSQL CSV, written by pyarrow in C++ (None when a column has mixed types).

    NULL is an empty field, an empty string is "", timestamps end in Z, NaN is NULL: what COPY's
    CSV format reads.
    """
    import pyarrow.csv as pcsv

    pa = arrow()
    naive = [c for c in frame.columns if frame[c].dtype.kind == "M" and getattr(frame[c].dtype, "tz", None) is None]
    if naive:  # naive timestamps are UTC here; without the Z the server would read them in its own zone
        frame = frame.assign(**{c: frame[c].dt.tz_localize("UTC") for c in naive})
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    out = pa.BufferOutputStream()
    pcsv.write_csv(table, out, pcsv.WriteOptions(include_header=False))
    return memoryview(out.getvalue())


def _python_columns(frame: Any) -> list[list[Any]]:
    """Each column as a list of plain Python values, None where missing: what COPY's write_row takes.

    Built column by column in C (tolist); timestamps become ISO text, which PostgreSQL parses.
    """
    import numpy as np

    frame = _timestamps_as_text(frame)
    cols: list[list[Any]] = []
    for c in frame.columns:
        s = frame[c]
        if isinstance(s.dtype, np.dtype) and s.dtype.kind == "f":
            arr = s.to_numpy()
            missing = np.isnan(arr)
            cols.append(np.where(missing, None, arr).tolist() if missing.any() else arr.tolist())
        elif s.isna().any():
            cols.append(s.to_numpy(dtype=object, na_value=None).tolist())
        else:
            cols.append(s.tolist())
    return cols


def insert_frame(conn: Connection, table: Table, frame: Any) -> int:
    """Bulk insert a pandas DataFrame whose columns are a subset of the table's.

    PostgreSQL: COPY of the frame's values (no CSV formatting in pandas, which was the slow part);
    elsewhere executemany of plain tuples.
    """
    if frame is None or len(frame) == 0:
        return 0
    cols = list(frame.columns)
    frame = _integer_columns_as_int(table, frame)
    if conn.dialect.name == "postgresql":
        for start in range(0, len(frame), CHUNK_ROWS * 5):
            part = frame.iloc[start : start + CHUNK_ROWS * 5]
            data = _arrow_csv(part)
            if data is None:  # a column pyarrow cannot type (mixed Python objects): value by value
                copy_text(conn, table, cols, zip(*_python_columns(part), strict=True))
                continue
            dbapi = conn.connection.driver_connection
            assert dbapi is not None
            col_sql = ", ".join(f'"{c}"' for c in cols)
            with dbapi.cursor() as cur, cur.copy(f'COPY "{table.name}" ({col_sql}) FROM STDIN WITH (FORMAT csv)') as cp:
                cp.write(data)
        return len(frame)
    stmt = table.insert()
    records = frame.astype(object).where(frame.notna(), None)
    for batch in chunks(records.itertuples(index=False, name=None)):
        conn.execute(stmt, [dict(zip(cols, row, strict=True)) for row in batch])
    return len(frame)
