"""The executor a deployment's runs use, from cams.yaml's `execution` (docs/operations.md#scale-out).

- `in_process`: every step in the run's own process, one after another (the SQLite default: one writer).
- `threads`: ready steps side by side in threads of the run's own process, up to `max_concurrent`
  (the PostgreSQL default; pipelines/threaded.py); Auterity's landing runs in a process of its own beside
  RelayCore's (`landed_apart`).
- `multiprocess`: each step in a child process, up to `max_concurrent` at once (RelayCore and Auterity
  land side by side: for a machine with cores to spare). Children come from a forkserver that imported the code
  location once, so a step does not pay Dagster's, pandas' and GX's imports again.
- `celery`: each step sent to Celery workers through a broker (RabbitMQ or Redis); workers started with
  `dagster-celery worker start -A dagster_celery.app -y celery.yaml` on any machine that sees the
  same Dagster instance and warehouse.
"""

from __future__ import annotations

import dagster as dg

from cams.config import ExecutionConfig

# what the forkserver imports once for every step's process
PRELOAD = ["pipelines.definitions", "pandas", "pyarrow", "great_expectations", "sqlalchemy"]


def landed_apart(cfg: ExecutionConfig, database_url: str) -> frozenset[str]:
    """The sources whose landing runs in a process of its own (cams.sources.landing_process): Auterity's on
    the threads executor, so it decodes on the other core while RelayCore lands in the run's process
    (two landings in one process only take turns at the GIL). Elsewhere none: in-process runs one step at
    a time (SQLite: one writer, also where threads were asked for), and multiprocess and Celery steps are
    processes of their own already."""
    threads = cfg.resolved(database_url) == "threads" and not database_url.startswith("sqlite")
    return frozenset({"auterity"}) if threads else frozenset()


def executor_for(cfg: ExecutionConfig, database_url: str) -> dg.ExecutorDefinition:
    kind = cfg.resolved(database_url)
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "threads":
        from pipelines.threaded import threaded_executor

        return threaded_executor.configured({"max_concurrent": cfg.max_concurrent})
    if kind == "multiprocess":
        return dg.multiprocess_executor.configured(
            {
                "max_concurrent": cfg.max_concurrent,
                "start_method": {"forkserver": {"preload_modules": PRELOAD}},
            }
        )
    from dagster_celery import celery_executor  # only a celery deployment needs it importable

    return celery_executor.configured({"broker": cfg.celery_broker, "backend": cfg.celery_backend})
