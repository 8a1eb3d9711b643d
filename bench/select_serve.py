"""The lookup on the request path, timed through the user's command: `cams serve` under load, beside
the same service with select on FastAPI only, and a constant-response ASGI app on the same server (the
ceiling). History is persisted throughout; the script checks every answered selection reached the
warehouse.

    .venv/bin/python bench/select_serve.py [--seconds 10] [--rates 1000,5000] [--database-url URL]

Closed loop: wrk -t2 -c32 (Debian package `wrk`; skipped with a note when absent). Open loop: the
generator below sends at a fixed rate on 64 keep-alive connections and measures each latency from
the request's *scheduled* send time, so a stalled server shows up in the tail instead of slowing the
sender (no coordinated omission). Everything runs on this machine's cores, generator included.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratch_db import scratch_database
from select_bench import build, cost_router

from cams.api.keys import create_key
from cams.warehouse.db import make_engine, migrate

BIN = Path(sys.executable).parent
BODY = {"org_id": "acme", "task_type": "chat", "quality_tier": "standard", "team_id": "search"}

FASTAPI_ONLY = """
import sys, uvicorn
from cams.api.app import create_app
from cams.warehouse.db import make_engine
app = create_app(make_engine(sys.argv[1]), fast_select=False, writer_process=True)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), loop="uvloop", http="httptools", access_log=False,
            log_level="warning")
"""

CONSTANT = """
import sys, uvicorn
BODY = b'{"selection_id":"0","model":"gpt-4o-mini","provider":"openai","estimated_cost_usd":"0.0001000000"}'
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            await send({"type": m["type"] + ".complete"})
            if m["type"] == "lifespan.shutdown":
                return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), loop="uvloop", http="httptools", access_log=False,
            log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{cmd[:3]} exited: {proc.stderr.read().decode()[-1500:]}")  # type: ignore[union-attr]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                time.sleep(1.0)  # the lifespan has loaded the table
                return proc
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{cmd[:3]} did not listen on {port}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def wrk(port: int, key: str, seconds: float) -> tuple[float, float, int] | None:
    """(requests/s, p99 ms, answered) from wrk -t2 -c32 with a POST body."""
    if shutil.which("wrk") is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(json.dumps(BODY))}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {key}"\n'
        )
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            "-c32",
            f"-d{int(seconds)}s",
            "--latency",
            "-s",
            f.name,
            f"http://127.0.0.1:{port}/api/v1/models/select",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    answered = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, p99, answered - (int(bad.group(1)) if bad else 0)


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


class _Conn(asyncio.Protocol):
    """One keep-alive connection of the open-loop generator: a request at a time, its response parsed
    in place (a protocol, not streams: the generator shares the server's cores, so it must cost little)."""

    def __init__(self, gen: _Generator) -> None:
        self.gen, self.buf, self.due = gen, bytearray(), 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.gen.idle.append(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None  # not handed out again; a request it carried counts as unanswered

    def send(self, due: float) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        self.due = due
        self.transport.write(self.gen.request)
        return True

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        at = head.find(b"content-length:")
        length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
        if len(self.buf) < end + 4 + length:
            return
        ok = self.buf.startswith(b"HTTP/1.1 200")
        del self.buf[: end + 4 + length]
        self.gen.done(self, time.perf_counter() - self.due, ok)


class _Generator:
    """Sends at a fixed rate over a pool of connections; a request waits for a free connection if all
    are busy, and its latency counts from when it was *due* (no coordinated omission)."""

    def __init__(self, request: bytes) -> None:
        # idle connections in turn (first in, first out), so none sits idle past the server's keep-alive
        self.request, self.idle, self.backlog = request, collections.deque(), collections.deque()
        self.latencies: list[float] = []
        self.errors = 0

    def due(self, at: float) -> None:
        while self.idle:
            if self.idle.popleft().send(at):
                return
        self.backlog.append(at)

    def done(self, conn: _Conn, seconds: float, ok: bool) -> None:
        self.latencies.append(seconds * 1000)
        self.errors += not ok
        if self.backlog and conn.send(self.backlog[0]):
            self.backlog.popleft()
        else:
            self.idle.append(conn)


async def _open_loop(port: int, key: str, rate: float, seconds: float, conns: int = 64) -> tuple[int, int, list[float]]:
    body = json.dumps(BODY).encode()
    request = (
        b"POST /api/v1/models/select HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    loop = asyncio.get_running_loop()
    gen = _Generator(request)
    transports = [(await loop.create_connection(lambda: _Conn(gen), "127.0.0.1", port))[0] for _ in range(conns)]
    await asyncio.sleep(0.2)
    total = int(rate * seconds)
    start = time.perf_counter() + 0.05

    def pace() -> None:
        """The schedule, kept by a thread: time.sleep wakes within ~0.1 ms, where the event loop's timers
        round to 1 ms (and a shorter asyncio.sleep spins). Each request is handed to the loop when due."""
        for i in range(total):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            loop.call_soon_threadsafe(gen.due, due)  # latency counts from when it was due, not when sent

    await asyncio.to_thread(pace)
    sent = total
    give_up = time.perf_counter() + 10
    while len(gen.latencies) < sent and time.perf_counter() < give_up:
        await asyncio.sleep(0.01)
    gen.errors += sent - len(gen.latencies)  # never answered: counted, not hidden
    for tr in transports:
        tr.close()
    return sent, gen.errors, gen.latencies


def open_loop(port: int, key: str, rate: float, seconds: float) -> tuple[float, float, float, int]:
    """(p50, p99, p99.9 ms, non-200 answers) at `rate` requests/s offered."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    _sent, errors, lat = asyncio.run(_open_loop(port, key, rate, seconds))
    lat.sort()

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))]

    return q(0.5), q(0.99), q(0.999), errors


def embedded(engine: sa.Engine, seconds: float) -> None:
    """`cams.selection.Client` in process beside LiteLLM's Router (cost-based-routing) on the same candidates."""
    from cams.selection.client import Client

    client = Client.from_warehouse(engine)
    reqs = [
        (f"org-{o}", task, tier, f"team-{o % 3}")
        for o in range(50)
        for task in client.table.tasks
        for tier in ("economy", "standard", "premium")
    ]
    select = client.select
    ok = [r for r in reqs if _answers(select, r)]  # decided once here; later answers come from the memo
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for org, task, tier, team in ok:
            select(org, task, tier, team)
        n += len(ok)
    memo = n / (time.perf_counter() - start)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for org, task, tier, team in ok:
            select(org, task, tier, team, input_tokens=1000)  # constrained: decided every time
        n += len(ok)
    decided = n / (time.perf_counter() - start)
    print(f"embedded Client.select: {memo:,.0f} decisions/s (plain requests, memo), {decided:,.0f}/s with input_tokens")
    lite = _litellm_router_rate(client, seconds)
    if lite:
        print(
            f"  LiteLLM Router(routing_strategy='cost-based-routing') on the same candidates: {lite:,.0f}/s "
            f"(Client {memo / lite:,.0f}x)"
        )


def _answers(select, r) -> bool:  # type: ignore[no-untyped-def]
    try:
        select(*r)
        return True
    except Exception:
        return False


def _litellm_router_rate(client, seconds: float) -> float | None:  # type: ignore[no-untyped-def]
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map
    try:
        from litellm import Router
    except ImportError:
        print("  LiteLLM comparison skipped: litellm is a dev dependency")
        return None
    router, groups = cost_router(Router, client.table)
    messages = [{"role": "user", "content": "Summarize the ticket."}]

    async def rate() -> float:
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for g in groups:
                await router.select(g, {}, messages=messages)  # type: ignore[attr-defined]
            n += len(groups)
        return n / (time.perf_counter() - start)

    return asyncio.run(rate())


def settle(port: int, timeout_s: float = 120.0) -> float:
    """Seconds until the server's history backlog (`/readyz`) is empty: each phase starts from a
    writer that has caught up, so a phase's latency is its own load's and not the previous phase's
    catch-up (the wrk phase spools ~10 s of 15,000+ selections a second)."""
    import httpx

    began = time.perf_counter()
    while time.perf_counter() - began < timeout_s:
        try:
            history = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json().get("history") or {}
        except (httpx.HTTPError, ValueError):
            return -1.0  # no /readyz (the constant app): nothing to wait for
        if not history.get("waiting_bytes"):
            return time.perf_counter() - began
        time.sleep(0.25)
    return time.perf_counter() - began


def history_rows(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("select count(*) from model_selection_history")).scalar() or 0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rates", default="1000,5000")
    ap.add_argument(
        "--database-url",
        default=os.environ.get("CAMS_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    a = ap.parse_args()
    rates = [float(r) for r in a.rates.split(",")]
    with scratch_database(a.database_url, "cams_bench_select") as url, tempfile.TemporaryDirectory() as spool:
        engine = make_engine(url)
        migrate(engine)
        build(engine)
        key = create_key(engine, ["read"])
        embedded(engine, min(a.seconds, 5.0))
        env = {**os.environ, "CAMS_DATABASE_URL": url, "CAMS_SPOOL_DIR": spool}
        contenders = [
            ("cams serve (lean select path)", [str(BIN / "cams"), "serve"], True),
            ("cams serve --workers 2", [str(BIN / "cams"), "serve", "--workers", "2"], True),
            ("same service, select on FastAPI", [sys.executable, "-c", FASTAPI_ONLY, url], True),
            ("constant ASGI response (ceiling)", [sys.executable, "-c", CONSTANT, url], False),
        ]
        print(f"{time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores; server, history writer and generator share them")
        print(
            f"{'':34} {'wrk -t2 -c32':>14} {'p99':>8} "
            + " ".join(f"{f'{r:.0f}/s p50 / p99 / p99.9 ms':>32}" for r in rates)
        )
        for name, cmd, persists in contenders:
            port = free_port()
            cmd = [*cmd, "--port", str(port)] if "serve" in cmd else [*cmd, str(port)]
            before = history_rows(engine)
            proc = start(cmd, env, port)
            try:
                closed = wrk(port, key, a.seconds)
                cells = []
                answered = closed[2] if closed else 0
                drains = []
                for r in rates:
                    drains.append(settle(port) if persists else -1.0)
                    p50, p99, p999, errors = open_loop(port, key, r, a.seconds)
                    answered += int(r * a.seconds) - errors
                    late = f" ({errors} not a 200 within 10 s)" if errors else ""
                    cells.append(f"{p50:7.2f} / {p99:7.2f} / {p999:7.2f}{late}")
            finally:
                stop(proc)
            head = f"{closed[0]:>10,.0f}/s {closed[1]:>7.2f}ms" if closed else f"{'(no wrk)':>14} {'':>8}"
            print(f"{name:34} {head} " + " ".join(f"{c:>32}" for c in cells))
            if persists:
                kept = history_rows(engine) - before
                print(f"{'':34} history in the warehouse after stop: {kept:,} of {answered:,} answered selections")
                print(
                    f"{'':34} waited for the writer to catch up before each open-loop phase: "
                    + ", ".join(f"{d:.1f} s" for d in drains)
                )


if __name__ == "__main__":
    main()
