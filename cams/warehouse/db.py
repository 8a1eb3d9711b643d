"""Engines, migrations and the two write paths every asset uses: replace a partition, append rows.

`replace_rows` deletes a partition's window and inserts its new rows in one transaction, so a
re-run replaces a day and two runs of one day cannot double-count. PostgreSQL takes rows through
COPY (psycopg 3 `cursor.copy()`), SQLite through executemany, both in bounded chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Connection, Engine, Table, create_engine, delete, event, literal_column, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import GenericFunction

CHUNK_ROWS = 20_000
COUNTED = {"preserve_rowcount": True}  # an INSERT … SELECT's rowcount is -1 through SQLAlchemy without it
# Rows per chunk of the day-sized reads. Measured on a 2M-request day (cost stage alone, PostgreSQL):
# 180k-row chunks peaked at 0.85 GiB, 50k at 0.37 GiB, 25k at 0.29 GiB, in the same time.
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


class bytewise(GenericFunction[str]):
    """A text column ordered by its bytes: `COLLATE "C"` on PostgreSQL, the column itself on SQLite (whose
    default is already bytewise). For ids, where only equality and a fixed tie-break matter: a database
    created with a libc locale (C.UTF-8, en_US) sorts them through strcoll without abbreviated keys,
    about twice as slow on a million ids, and orders ties differently from SQLite."""

    inherit_cache = True


@compiles(bytewise)
def _bytewise(element: bytewise, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(bytewise, "postgresql")
def _bytewise_pg(element: bytewise, compiler: Any, **kw: Any) -> str:
    return f'({compiler.process(element.clauses, **kw)}) COLLATE "C"'


def epoch_bucket(ts: ColumnElement[Any], seconds: int) -> ColumnElement[int]:
    """Which `seconds`-long stretch since 1970-01-01 UTC a time falls in (the floor of its epoch seconds
    over `seconds`), for sums per stretch of time in the database: a quarter-hour sum belongs wholly to
    one local day in every time zone whose offset is a whole number of quarter hours. `seconds` is
    written into the statement (a literal is part of SQLAlchemy's cache key; a bound value is not, and a
    GROUP BY must repeat the select's expression exactly)."""
    return _EpochBucket(ts, literal_column(str(int(seconds))))


class _EpochBucket(GenericFunction[int]):
    type = BigInteger()
    inherit_cache = True


@compiles(_EpochBucket)
def _epoch_bucket_sqlite(element: _EpochBucket, compiler: Any, **kw: Any) -> str:
    ts, seconds = (compiler.process(c, **kw) for c in element.clauses)
    # SQLite's times are UTC text ('YYYY-MM-DD HH:MM:SS.ffffff'). Its date functions keep milliseconds,
    # rounded: 14:59.9995 would be 15:00 and land in the next quarter hour. The whole seconds, cut from
    # the text, floor instead
    return f"(CAST(strftime('%s', substr({ts}, 1, 19)) AS INTEGER) / {seconds})"


@compiles(_EpochBucket, "postgresql")
def _epoch_bucket_pg(element: _EpochBucket, compiler: Any, **kw: Any) -> str:
    """date_part's double, not extract's NUMERIC: 0.38 s against 0.82 s for a scan of a million requests
    grouped by quarter hour. The floor is still exact: a microsecond timestamp t (an integer below 2**52,
    until 2112) gives t / 1e6 / seconds through two correctly rounded divisions, each off by at most 2**-53
    of the value, while a t short of a bucket's edge is short of it by at least one part in t, which is more;
    and a t on an edge divides exactly. `extract(epoch ...)` (migration 0017) gives the same buckets."""
    ts, seconds = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(floor(date_part('epoch', {ts}) / {seconds}) AS BIGINT)"


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
