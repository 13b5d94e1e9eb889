"""Building blocks for chaos tests: real processes killed, real connections cut.

Everything here runs on 127.0.0.1 and is meant to be asserted on *from the outside*
(database rows, Redis keys, broker queues, what a fake Stripe saw), never by peeking into
the processes under test.

- `TcpProxy`: a byte-forwarding proxy in front of PostgreSQL or a broker; `.cut()` kills
  every live connection at once (RST both ways) and refuses new ones until `.restore()`.
- `RedisServer`: a private `redis-server` (AOF on by default) that can be SIGTERMed,
  SIGKILLed and restarted on the same port with the same data directory.
- `WorkerProcess`: a real prefork Celery worker in its own session/process group, with
  helpers to kill one pool process, the main process, or the whole group.
- `StripeServer`: `billing.sandbox.StripeSandbox` served in this process, with outages
  (connection refused, or 5xx answers) and charge counts per invoice.
- `use_broker(url)` (from tests/brokers.py, re-exported) / `use_redis(url)`: point this
  test process's Celery app / shared Redis client elsewhere for a `with` block.
- `wait_until(...)`: bounded polling. `broker_counts(url)`: messages in a Redis broker.

Every process started here runs in a new session (its own process group), gets SIGKILL if
the thread that started it dies (Linux `PR_SET_PDEATHSIG`, set when started from the main
thread), and is killed at interpreter exit if still alive, so a crashed or interrupted test
run leaves nothing behind. All waits are bounded.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

# One implementation for the whole suite: points config.celery.app (pools included) and
# settings.CELERY_BROKER_URL at another broker for a with-block, then restores them.
from tests.brokers import use_broker

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / "var" / "chaos"
QUEUE_NAMES: tuple[str, ...] = ("automation", "notifications", "billing")
LOCALHOST = "127.0.0.1"

T = TypeVar("T")

__all__ = [
    "LOG_DIR",
    "QUEUE_NAMES",
    "BrokerCounts",
    "RedisServer",
    "StripeServer",
    "TcpProxy",
    "WorkerProcess",
    "broker_counts",
    "free_port",
    "group_pids",
    "is_running",
    "use_broker",
    "use_redis",
    "wait_until",
]


# --- waiting -------------------------------------------------------------------------


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.1,
               message: str | Callable[[], str] = "",
               ignore: tuple[type[BaseException], ...] = ()) -> T:
    """Call `predicate` until it returns something truthy; return that value.

    Promises: returns within about `timeout` seconds (plus one predicate call); raises
    AssertionError (so the test fails, not errors) with `message` on timeout. `message` may
    be a callable, evaluated only on failure (e.g. `lambda: worker.log_text(tail=40)`).
    Exceptions listed in `ignore` count as "not yet" (useful while a service is down); the
    last one is appended to the failure message. Other exceptions propagate at once.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
        except ignore as exc:
            last_error, value = exc, None
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            text = message() if callable(message) else message
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise AssertionError(f"condition not met within {timeout}s: {text}{detail}")
        time.sleep(min(interval, remaining))


# --- processes -------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS may hand it out again)."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


# Runs before the real program: SIGKILL when the parent thread dies, then exec.
_LAUNCHER = (
    "import ctypes, os, sys\n"
    "ctypes.CDLL(None).prctl(1, 9)\n"  # PR_SET_PDEATHSIG, SIGKILL
    "os.getppid() == int(sys.argv[1]) or os._exit(70)\n"  # parent already gone
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)
_live_groups: set[int] = set()
_live_lock = threading.Lock()


def _spawn(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path,
           log_path: Path) -> subprocess.Popen:
    """Start argv in a new session (process group = its pid), output appended to log_path."""
    if threading.current_thread() is threading.main_thread():
        argv = [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *argv]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    with _live_lock:
        _live_groups.add(proc.pid)
    return proc


def _forget(pgid: int) -> None:
    with _live_lock:
        _live_groups.discard(pgid)


@atexit.register
def _kill_leftovers() -> None:
    with _live_lock:
        groups = list(_live_groups)
        _live_groups.clear()
    for pgid in groups:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgrp) from /proc/<pid>/stat, or None if the process is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2])


def is_running(pid: int) -> bool:
    """True if pid exists and is not a zombie (a dead process nobody has reaped yet)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _scan(match: Callable[[int, int], bool]) -> list[int]:
    """Running (non-zombie) pids whose (ppid, pgrp) match."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None and stat[0] not in ("Z", "X") and match(stat[1], stat[2]):
            found.append(int(entry.name))
    return sorted(found)


def group_pids(pgid: int) -> list[int]:
    """Running (non-zombie) processes in process group `pgid`."""
    return _scan(lambda _ppid, pgrp: pgrp == pgid)


def _kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _reap(proc: subprocess.Popen, timeout: float) -> int | None:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def _tail(path: Path, lines: int | None) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    if lines is None:
        return text
    return "\n".join(text.splitlines()[-lines:])


# --- TCP proxy -----------------------------------------------------------------------


def _reset_close(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a TCP RST, not a polite FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _Pipe:
    """One proxied connection: two pump threads; the last one out closes both sockets."""

    TICK = 0.05  # how often a pump looks at the abort flag

    def __init__(self, proxy: TcpProxy, client: socket.socket,
                 upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client, self.upstream = client, upstream
        self.aborted = threading.Event()
        self.closed = threading.Event()
        self._running = 2
        self._lock = threading.Lock()
        for sock in (client, upstream):
            sock.settimeout(self.TICK)

    def start(self) -> None:
        for src, dst, name in ((self.client, self.upstream, "up"),
                               (self.upstream, self.client, "down")):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True,
                             name=f"tcpproxy-{self.proxy.port}-{name}").start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not self.aborted.is_set():
                try:
                    data = src.recv(65536)
                except TimeoutError:
                    continue
                except OSError:  # reset by the peer: pass the reset on
                    self.aborted.set()
                    return
                if not data:  # orderly EOF: pass the FIN on, keep the other direction
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        self.aborted.set()
                    return
                if not self._send(dst, data):
                    self.aborted.set()
                    return
        finally:
            self._finish()

    def _send(self, dst: socket.socket, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            if self.aborted.is_set():
                return False
            try:
                sent = dst.send(view)
            except TimeoutError:
                continue
            except OSError:
                return False
            view = view[sent:]
        return True

    def _finish(self) -> None:
        with self._lock:
            self._running -= 1
            last = self._running == 0
        if not last:
            return
        for sock in (self.client, self.upstream):
            if self.aborted.is_set():
                _reset_close(sock)
            else:
                with contextlib.suppress(OSError):
                    sock.close()
        self.proxy._forget(self)
        self.closed.set()


class TcpProxy:
    """A TCP proxy on 127.0.0.1:<free port> forwarding to `target`, which can be cut.

    Promises:
    - `.port` is fixed at construction and never changes (`.cut()` keeps listening).
    - Bytes are forwarded unchanged both ways; an orderly close (FIN) on one side is passed
      on to the other; a reset on one side resets the other.
    - `.cut()` returns only once every connection that was live has been closed with a
      TCP RST on both sides (a client blocked in a query sees its connection die at once);
      until `.restore()` every new connection is accepted and immediately reset, so
      connecting clients fail fast instead of hanging.
    - `.stop()` resets every connection, closes the listening socket and joins the threads.
    - If the target refuses a connection, the client's connection is reset.
    Single use: start, (cut/restore)*, stop. Also a context manager (start ... stop).
    """

    def __init__(self, target: tuple[str, int], *, connect_timeout: float = 5.0) -> None:
        self.target = target
        self.connect_timeout = connect_timeout
        self.host = LOCALHOST
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((self.host, 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pipes: set[_Pipe] = set()
        self._refusing = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.accepted = 0  # connections forwarded to the target so far
        self.refused = 0  # connections reset because the proxy was cut

    @property
    def url_port(self) -> int:
        """The port to put in client URLs (same as `.port`); see also proxied_url()."""
        return self.port

    @property
    def active(self) -> int:
        """Connections currently forwarded."""
        with self._lock:
            return len(self._pipes)

    @property
    def is_cut(self) -> bool:
        return self._refusing

    def proxied_url(self, url: str) -> str:
        """`url` with its host:port replaced by the proxy's (user, password, path kept)."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@" if userinfo else ""
        return urlunsplit(parts._replace(netloc=f"{netloc}{self.host}:{self.port}"))

    def start(self) -> TcpProxy:
        self._listener.listen(128)
        self._listener.settimeout(0.05)
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name=f"tcpproxy-{self.port}-accept")
        self._thread.start()
        return self

    def cut(self, timeout: float = 5.0) -> None:
        """Reset every live connection (both sides) and refuse new ones until restore()."""
        with self._lock:
            self._refusing = True
            pipes = list(self._pipes)
        for pipe in pipes:
            pipe.aborted.set()
        deadline = time.monotonic() + timeout
        for pipe in pipes:
            if not pipe.closed.wait(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"proxy :{self.port}: a connection did not close in "
                                   f"{timeout}s")

    def restore(self) -> None:
        """Accept and forward new connections again (connections cut stay dead)."""
        with self._lock:
            self._refusing = False

    def stop(self, timeout: float = 5.0) -> None:
        """Reset all connections, stop listening and join the accept thread. Idempotent."""
        self._stopping.set()
        try:
            self.cut(timeout=timeout)
        finally:
            if self._thread is not None:
                self._thread.join(timeout)
            with contextlib.suppress(OSError):
                self._listener.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _forget(self, pipe: _Pipe) -> None:
        with self._lock:
            self._pipes.discard(pipe)

    def _accept_loop(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    client, _ = self._listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                if self._refusing or self._stopping.is_set():
                    self.refused += 1
                    _reset_close(client)
                    continue
                threading.Thread(target=self._connect, args=(client,), daemon=True,
                                 name=f"tcpproxy-{self.port}-connect").start()
        finally:
            with contextlib.suppress(OSError):
                self._listener.close()

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=self.connect_timeout)
        except OSError:
            _reset_close(client)
            return
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pipe = _Pipe(self, client, upstream)
        with self._lock:  # decided under the lock that cut() takes: no connection slips by
            refused = self._refusing or self._stopping.is_set()
            if not refused:
                self._pipes.add(pipe)
                self.accepted += 1
        if refused:
            self.refused += 1
            _reset_close(client)
            _reset_close(upstream)
            return
        pipe.start()


# --- Redis server --------------------------------------------------------------------


class RedisServer:
    """A private redis-server on 127.0.0.1:<free port> with its own data directory.

    Promises:
    - `.port` and `.dir` stay the same across stop/kill/restart, so clients and data
      survive a restart exactly as they would for a real server (with `appendonly=True`,
      every acknowledged write is in the AOF - `appendfsync always` - and survives SIGKILL).
    - `.start()` returns once the server answers PING (AOF loaded), or raises within
      `timeout`; `.stop()`/`.kill()` return once the process is gone and reaped.
    - `.close()` stops it and removes the data directory if this object created it.
    Started with `--save ""` (no RDB snapshots), so without AOF a restart loses everything.
    """

    def __init__(self, appendonly: bool = True, *, dir: Path | None = None,
                 port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH")
        self.binary = binary
        self.appendonly = appendonly
        self.port = port or free_port()
        self._own_dir = dir is None
        self.dir = Path(dir) if dir is not None else Path(tempfile.mkdtemp(prefix="chaos-redis-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"redis-{self.port}-{uuid.uuid4().hex[:6]}.log"
        self._proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://{LOCALHOST}:{self.port}/{db}"

    def client(self, db: int = 0, timeout: float = 2.0, retries: int = 1) -> redis.Redis:
        """A new client with short timeouts that fails fast while the server is down.

        redis-py's default retry policy backs off for ~5 s before a ConnectionError; here
        `retries` quick retries (enough to replace a connection a restart made stale).
        """
        return redis.Redis(host=LOCALHOST, port=self.port, db=db, socket_timeout=timeout,
                           socket_connect_timeout=timeout,
                           retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), retries))

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_text(self, tail: int | None = None) -> str:
        return _tail(self.log_path, tail)

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self.alive:
            raise RuntimeError(f"redis :{self.port} is already running")
        argv = [self.binary, "--port", str(self.port), "--bind", LOCALHOST,
                "--dir", str(self.dir), "--save", "", "--daemonize", "no",
                "--protected-mode", "yes", "--logfile", ""]
        if self.appendonly:
            argv += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            argv += ["--appendonly", "no"]
        self._proc = _spawn(argv, env=os.environ, cwd=self.dir, log_path=self.log_path)

        def answers() -> bool:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited ({self._proc.returncode}):\n"
                                   f"{self.log_text(tail=20)}")
            client = self.client(timeout=0.5, retries=0)
            try:
                return bool(client.ping())
            except redis.RedisError:  # refused, or still loading the AOF
                return False
            finally:
                client.close()

        try:
            wait_until(answers, timeout, interval=0.02,
                       message=lambda: f"redis :{self.port} not answering PING\n"
                                       f"{self.log_text(tail=20)}")
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Redis flushes the AOF and exits); SIGKILL if still alive after timeout."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: the server dies mid-whatever, as in a host or OOM kill."""
        self._end(signal.SIGKILL, 5.0)

    def restart(self, kill: bool = True, down_for: float = 0.0,
                timeout: float = 10.0) -> RedisServer:
        """kill() (or stop()), stay down `down_for` seconds, start on the same port and dir."""
        self.kill() if kill else self.stop()
        if down_for > 0:
            time.sleep(down_for)
        return self.start(timeout=timeout)

    def close(self) -> None:
        """Stop, and delete the data directory if this object created it. Idempotent."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _end(self, sig: int, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            if _reap(proc, timeout) is None:
                _kill_group(proc.pid)
                _reap(proc, 5.0)
        _kill_group(proc.pid)  # nothing should be left in its group; make sure
        _forget(proc.pid)


# --- Celery worker -------------------------------------------------------------------

_worker_seq = itertools.count(1)


def _control(url: str, command: str, destination: str, timeout: float,
             arguments: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """A remote-control broadcast to one node over the broker at `url`.

    Uses a plain kombu Mailbox on a connection of its own, not the Celery app: the app's
    control mailbox publishes through the app's producer pool (the app's broker), whatever
    connection is passed. Returns the replies ([] when none came or the broker is down).
    """
    from kombu import Connection
    from kombu.pidbox import Mailbox

    from config.celery import app

    conf = app.conf
    mailbox = Mailbox(conf.control_exchange, type="fanout", accept=conf.accept_content,
                      serializer=conf.task_serializer, queue_ttl=conf.control_queue_ttl,
                      reply_queue_ttl=conf.control_queue_ttl,
                      queue_expires=conf.control_queue_expires,
                      reply_queue_expires=conf.control_queue_expires)
    options = {**(conf.broker_transport_options or {}), "max_retries": 1}
    try:
        with Connection(url, connect_timeout=timeout, transport_options=options) as conn:
            return mailbox(conn)._broadcast(command, arguments or {}, destination=[destination],
                                            reply=True, timeout=timeout, limit=1) or []
    except Exception:  # a broker that is down means "no answer"
        return []


class WorkerProcess:
    """A real Celery prefork worker (`celery -A config worker`) started from the repo root.

    The environment is this process's, plus DJANGO_SETTINGS_MODULE=tests.settings,
    CONN_MAX_AGE=0 and `env_overrides` (typically DATABASE_URL through a TcpProxy,
    REDIS_URL and CELERY_BROKER_URL on a RedisServer: see the chaos_env fixture). Output goes
    to `.log_path` under var/chaos/. The worker is the leader of its own process group, so
    `.kill_all()` takes its pool processes with it.

    Promises:
    - `.start()` returns at once; `.wait_ready(timeout)` returns once the log shows
      "<nodename> ready." (consuming, remote control up) AND the node answers a ping over
      ITS broker; it raises if the process exits first or the time runs out.
    - `.kill_child/.kill_main/.kill_all` send SIGKILL and return once the victims are gone.
    - `.terminate()` always leaves no process of the group running (SIGTERM = warm
      shutdown, which waits for running tasks; SIGKILL to the group after `timeout`).
    One process per object: to "restart" a worker, start another (the same `name` may be
    reused once the first is dead).
    """

    def __init__(self, env_overrides: Mapping[str, str] | None = None,
                 queues: Sequence[str] = QUEUE_NAMES, concurrency: int = 2,
                 name: str | None = None, extra_args: Sequence[str] = ()) -> None:
        self.name = name or f"chaos{os.getpid()}w{next(_worker_seq)}"
        # what `-n name@%h` expands to; pings are addressed to it
        self.nodename = f"{self.name}@{socket.gethostname()}"
        self.queues = tuple(queues)
        self.concurrency = concurrency
        self.env: dict[str, str] = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "CONN_MAX_AGE": "0",
            "PYTHONUNBUFFERED": "1",
            **(env_overrides or {}),
        }
        # as config/settings.py decides it
        self.broker_url = (self.env.get("CELERY_BROKER_URL") or self.env.get("REDIS_URL")
                           or "redis://127.0.0.1:6379/0")
        self.argv = [sys.executable, "-m", "celery", "-A", "config", "worker", "-P", "prefork",
                     "-c", str(concurrency), "-Q", ",".join(self.queues),
                     "-n", f"{self.name}@%h", "--without-gossip", "--without-mingle",
                     "-l", "INFO", *extra_args]
        self.log_path = LOG_DIR / f"{self.name}-{uuid.uuid4().hex[:6]}.log"
        self._proc: subprocess.Popen | None = None

    def __repr__(self) -> str:
        return f"<WorkerProcess {self.nodename} pid={self.pid} log={self.log_path}>"

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> WorkerProcess:
        if self._proc is not None:
            raise RuntimeError(f"{self!r} was already started; start another WorkerProcess")
        self._proc = _spawn(self.argv, env=self.env, cwd=ROOT, log_path=self.log_path)
        return self

    def wait_ready(self, timeout: float = 60.0) -> WorkerProcess:
        """Wait for "<nodename> ready." in the log, then for a ping answer over its broker."""
        marker = f"{self.nodename} ready."

        def ready() -> bool:
            proc = self._require()
            if proc.poll() is not None:
                raise RuntimeError(f"worker {self.nodename} exited ({proc.returncode}) "
                                   f"before it was ready:\n{self.log_text(tail=40)}")
            return marker in self.log_text() and self.ping(timeout=0.5)

        wait_until(ready, timeout, interval=0.1,
                   message=lambda: f"worker {self.nodename} not ready\n"
                                   f"{self.log_text(tail=40)}")
        return self

    def terminate(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (warm shutdown: running tasks finish), then SIGKILL the whole group.

        Returns the main process's exit code (negative: killed by that signal), or None if
        it was never started. Idempotent.
        """
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            _reap(proc, timeout)
        self._kill_group_and_wait(5.0)
        return proc.returncode

    # --- state -----------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The main process's pid (also the process group id)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        """The main process is running."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def child_pids(self) -> list[int]:
        """The pool processes: running children of the main process (sorted)."""
        main = self._require().pid
        return _scan(lambda ppid, _pgrp: ppid == main)

    def group_pids(self) -> list[int]:
        """Every running process of the worker's group (main, pool, anything orphaned)."""
        return group_pids(self._require().pid)

    def ping(self, timeout: float = 1.0) -> bool:
        """The node answers a remote-control ping over its own broker."""
        return bool(_control(self.broker_url, "ping", self.nodename, timeout))

    def active_tasks(self, timeout: float = 1.0) -> list[dict[str, Any]]:
        """`inspect active` for this node: requests being executed, with `worker_pid`.

        [] when none, or when the node (or its broker) does not answer.
        """
        for reply in _control(self.broker_url, "active", self.nodename, timeout):
            if self.nodename in reply:
                return list(reply[self.nodename] or [])
        return []

    def busy_child_pid(self, timeout: float = 1.0) -> int | None:
        """The pool process executing a task (the first one if several), or None.

        From `inspect active` (`worker_pid`), so the main process must be alive and the
        broker reachable; poll it with wait_until right after publishing.
        """
        for request in self.active_tasks(timeout):
            pid = request.get("worker_pid")
            if pid:
                return int(pid)
        return None

    def log_text(self, tail: int | None = None) -> str:
        """The worker's output so far (the last `tail` lines), for assertion messages."""
        return _tail(self.log_path, tail)

    # --- chaos -----------------------------------------------------------------------

    def kill_child(self, pid: int | None = None, timeout: float = 5.0) -> int:
        """SIGKILL one pool process and return its pid once it is gone.

        `pid` None: the busy one (busy_child_pid) if a task is running, else any child.
        The main process notices (WorkerLostError; with reject_on_worker_lost the message
        is requeued) and forks a replacement.
        """
        victim = pid or self.busy_child_pid() or next(iter(self.child_pids()), None)
        if victim is None:
            raise RuntimeError(f"{self!r} has no pool process to kill")
        if victim not in self.child_pids():
            raise RuntimeError(f"{victim} is not a pool process of {self!r}")
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: not is_running(victim), timeout, interval=0.02,
                   message=f"pool process {victim} still running after SIGKILL")
        return victim

    def kill_main(self, timeout: float = 5.0) -> list[int]:
        """SIGKILL the main process only; returns the pool pids it had (they may outlive it:
        check with group_pids()). Its unacked messages stay unacked until the broker's
        visibility timeout."""
        proc = self._require()
        children = self.child_pids()
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        if _reap(proc, timeout) is None:
            raise RuntimeError(f"{self!r} survived SIGKILL for {timeout}s")
        return children

    def kill_all(self, timeout: float = 10.0) -> None:
        """SIGKILL the whole process group (the host is gone); returns once none runs."""
        self._require()
        self._kill_group_and_wait(timeout)

    def _kill_group_and_wait(self, timeout: float) -> None:
        proc = self._require()
        _kill_group(proc.pid)
        _reap(proc, timeout)

        def group_gone() -> bool:
            if not group_pids(proc.pid):
                return True
            _kill_group(proc.pid)  # anything forked meanwhile
            return False

        wait_until(group_gone, timeout, interval=0.02,
                   message=lambda: f"processes left in group {proc.pid}: "
                                   f"{group_pids(proc.pid)}")
        _forget(proc.pid)

    def _require(self) -> subprocess.Popen:
        if self._proc is None:
            raise RuntimeError(f"{self!r} was not started")
        return self._proc


# --- Stripe --------------------------------------------------------------------------


class StripeServer:
    """`billing.sandbox.StripeSandbox` answering HTTP on 127.0.0.1 from this process.

    The sandbox's state (invoices, charges, idempotency keys) lives in `.sandbox` and
    survives stop/start, as Stripe's does across an outage of the network to it.

    Promises:
    - `.url` / `.port` are fixed after the first start() and reused by every later one.
    - `.stop()` stops listening AND shuts down every open (keep-alive) connection, so no
      client keeps talking to it; new connections are refused until `.start()`.
    - `.outage()` is a with-block: `status=None` -> down (connection refused) for the
      block; `status=500|503` -> up, but every request answers that status and executes
      nothing (the sandbox's outage mode).
    - `.charges_for(invoice)` / `.charge_counts()` count executed payments (idempotent
      replays are not charges).
    """

    def __init__(self, api_key: str | None = None) -> None:
        from django.conf import settings

        from billing.sandbox import StripeSandbox

        self.sandbox = StripeSandbox(
            api_key=api_key if api_key is not None else settings.STRIPE_API_KEY or None)
        self.port = 0
        self._server: Any = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("StripeServer was never started")
        return f"http://{LOCALHOST}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for worker processes (STRIPE_API_KEY comes from tests.settings)."""
        return {"STRIPE_API_BASE": self.url}

    @property
    def up(self) -> bool:
        return self._server is not None

    def start(self) -> StripeServer:
        from billing.sandbox import SandboxServer

        if self._server is not None:
            return self
        server = SandboxServer(self.sandbox, LOCALHOST, self.port)
        accept = server.httpd.get_request

        def get_request() -> tuple[socket.socket, Any]:
            sock, address = accept()
            with self._lock:
                self._conns = [s for s in self._conns if s.fileno() != -1]
                self._conns.append(sock)
            return sock, address

        server.httpd.get_request = get_request  # track connections to cut them at stop()
        server.start()
        self.port = server.httpd.server_address[1]
        self._server = server
        return self

    def stop(self) -> None:
        """Stop listening and shut down open connections (in-flight answers are lost)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.stop()
        with self._lock:
            conns, self._conns = self._conns, []
        for sock in conns:  # the handler thread closes it once it sees EOF
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    @contextlib.contextmanager
    def outage(self, status: int | None = None) -> Iterator[None]:
        """Unavailable for the block: refused (status None) or answering 500/503."""
        if status is None:
            self.stop()
            try:
                yield
            finally:
                self.start()
            return
        with self.sandbox.lock:
            previous, self.sandbox.outage_status = self.sandbox.outage_status, status
        try:
            yield
        finally:
            with self.sandbox.lock:
                self.sandbox.outage_status = previous

    def charges_for(self, invoice_id: str, *, succeeded: bool = True) -> int:
        """Executed payments of one invoice (successful only unless succeeded=False)."""
        with self.sandbox.lock:
            return self.sandbox.charges_for(invoice_id, succeeded=succeeded)

    def charge_counts(self, *, succeeded: bool = True) -> dict[str, int]:
        """Executed payments per invoice id (successful only unless succeeded=False)."""
        with self.sandbox.lock:
            return dict(Counter(c.invoice_id for c in self.sandbox.charges
                                if c.succeeded or not succeeded))

    def __enter__(self) -> StripeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- pointing this process elsewhere -------------------------------------------------


@contextlib.contextmanager
def use_redis(url: str) -> Iterator[redis.Redis]:
    """Within the block, settings.REDIS_URL is `url` and get_redis() returns a client of it.

    Yields that client. On exit its connections are closed and the previous URL is back.
    Leave the block before the test ends: tests/conftest.py flushes get_redis() at teardown.
    """
    from django.test import override_settings

    from automation.connections import get_redis

    with override_settings(REDIS_URL=url):
        get_redis.cache_clear()
        client = get_redis()
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.connection_pool.disconnect()
            get_redis.cache_clear()
    get_redis.cache_clear()


# --- broker contents -----------------------------------------------------------------


@dataclass(frozen=True)
class BrokerCounts:
    """Messages in a Redis broker: waiting per queue, and taken but not yet acked."""

    queued: dict[str, int]
    unacked: int

    @property
    def waiting(self) -> int:
        return sum(self.queued.values())

    @property
    def total(self) -> int:
        """Every message the broker still holds: not lost, not yet done."""
        return self.waiting + self.unacked


def broker_counts(url: str, queues: Sequence[str] = QUEUE_NAMES) -> BrokerCounts:
    """LLEN of every priority list of each queue and HLEN of kombu's `unacked` hash.

    Key layout from monitoring.broker (same transport options as the workers). A message
    a worker holds (prefetched or executing, acks_late) is in `unacked`; one whose worker
    died with SIGKILL stays there until the visibility timeout restores it to its queue,
    so `total` is the figure to compare before and after a kill.
    """
    from monitoring.broker import REDIS_SCHEMES, broker_layout

    if urlsplit(url).scheme not in REDIS_SCHEMES:
        raise ValueError(f"broker_counts reads a Redis broker, not {url.split('://')[0]}://")
    layout = broker_layout()
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2,
                                  retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1))
    try:
        with client.pipeline(transaction=False) as pipe:
            for queue in queues:
                for key in layout.lists_of(queue):
                    pipe.llen(key)
            pipe.hlen(layout.unacked_key)
            replies = pipe.execute()
    finally:
        client.close()
    steps = len(layout.priority_steps)
    queued = {queue: sum(int(n) for n in replies[i * steps:(i + 1) * steps])
              for i, queue in enumerate(queues)}
    return BrokerCounts(queued=queued, unacked=int(replies[-1]))
