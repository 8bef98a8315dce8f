"""The indexing worker: drains the durable ``pending_event`` queue in batches (docs/service.md,
"Events → index").

    >>> from ecr_oci.server.db.engine import make_engine, session_factory
    >>> from ecr_oci.server.db.migrate import upgrade
    >>> engine = make_engine("sqlite://"); upgrade(engine)
    >>> pending_count(session_factory(engine))
    0

``POST /events`` queues the events that count as activity or change the index
(``notifications.enqueue_events``) and answers 202; :class:`EventQueue` runs one worker (a
thread, or a process of its own: see :class:`WorkerProcess`) that takes up to
:attr:`EventQueue.batch` rows (oldest first), waiting :attr:`EventQueue.linger` after a wake-up
or a partial batch so that a stream of events becomes batches, and hands them to
:func:`~ecr_oci.server.services.notifications.handle_events` (which records their activity and
indexes each distinct change once) with a thread pool (the registry reads of independent events
overlap) and the rows' ids, which are deleted in the batch's write transaction. So a crash
before that commit leaves the rows queued and the next start drains them; so does a registry or
database that cannot be reached (the batch is retried). An event whose own content fails (the
registry answers that its manifest is gone, a bad digest, a value the schema refuses) is logged and
left for reconcile, and a row that does not parse is logged and dropped: neither holds up the
others. :meth:`EventQueue.wait_drained` blocks until
the table is empty (tests, tools): an empty table means recorded and indexed, since rows leave
it in the transaction that applies them.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, func, make_url, select
from sqlalchemy.orm import Session, sessionmaker

from ecr_oci.oci.reads import MetadataReads
from ecr_oci.server.db.engine import make_engine, session_factory
from ecr_oci.server.db.models import PendingEvent
from ecr_oci.server.services.activity import NotificationEvent
from ecr_oci.server.services.index import BlobCache
from ecr_oci.server.services.notifications import handle_events

__all__ = ["EventQueue", "WorkerProcess", "pending_count"]

log = logging.getLogger("ecr_oci.server.queue")


def pending_count(sessions: sessionmaker[Session]) -> int:
    """How many events are queued and not yet indexed."""
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(PendingEvent)) or 0)


@dataclass(frozen=True)
class WorkerProcess:
    """What a worker in a process of its own needs to build its engine and its registry reader
    (:class:`~ecr_oci.oci.reads.MetadataReader`: about half of httpx's CPU per read).

    Sent to a freshly spawned interpreter, so it must pickle: ``reads`` is a module-level
    function or a ``functools.partial`` of one (``partial(service_reader, settings)``).
    """

    database_url: str
    reads: Callable[[], MetadataReads]

    @staticmethod
    def can_share(database_url: str) -> bool:
        """Whether another process sees the same database (not an in-memory SQLite one)."""
        url = make_url(database_url)
        if url.get_backend_name() != "sqlite":
            return True
        database = url.database or ""
        return database not in ("", ":memory:") and "mode=memory" not in str(url)


class EventQueue:
    """The worker over ``pending_event``: :meth:`start` it, :meth:`notify` it after a POST
    queued events, :meth:`stop` it (waits for the batch in progress).

    The worker is a thread of this process, or with ``process`` a process of its own (spawned by
    :meth:`start`, ended by :meth:`stop`). Why a process: the POST path and the indexing (two
    registry reads through httpx, the batch's writes) each need most of a core at 500 events/s,
    and under one GIL they also wait for each other (docs/service.md, "Events → index").
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        reads: Callable[[], MetadataReads],
        *,
        cache: BlobCache | None = None,
        batch: int = 100,
        linger: float = 0.05,
        workers: int = 8,
        poll: float = 1.0,
        process: WorkerProcess | None = None,
    ) -> None:
        self.sessions = sessions
        self.process = process
        #: Where the worker reads manifests and metadata blobs (a registry client, or the lean reader).
        self.reads = reads
        self.cache = cache if cache is not None else BlobCache()
        self.batch = batch
        self.linger = linger
        self.workers = workers
        #: Seconds between looks at the table without a wake-up (rows queued by another replica).
        self.poll = poll
        # threading.Event, or multiprocessing's (the same methods) when the worker is a process
        self._wake: Any = threading.Event()
        self._done = threading.Condition()
        self._stopping: Any = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._child: Any = None

    def start(self) -> None:
        if self._thread is not None or self._child is not None:
            return
        if self.process is not None:
            self._start_process(self.process)
            return
        self._stopping.clear()
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="ecr-fetch")
        self._thread = threading.Thread(target=self._run, name="ecr-index-queue", daemon=True)
        self._thread.start()

    def _start_process(self, process: WorkerProcess) -> None:
        context = multiprocessing.get_context("spawn")  # not fork: this process runs threads
        self._wake, self._stopping = context.Event(), context.Event()
        root = logging.getLogger()
        formats = [h.formatter._fmt for h in root.handlers if h.formatter is not None and h.formatter._fmt]
        options = {"batch": self.batch, "linger": self.linger, "workers": self.workers, "poll": self.poll}
        self._child = context.Process(
            target=_process_main,
            args=(process, options, self._wake, self._stopping, root.level, formats[0] if formats else None),
            name="ecr-index-worker",
            daemon=True,
        )
        self._child.start()

    def notify(self) -> None:
        self._wake.set()
        child = self._child
        if child is not None and not child.is_alive() and not self._stopping.is_set():
            log.error("the indexing worker process ended (exit code %s); starting another", child.exitcode)
            self._child = None
            assert self.process is not None
            self._start_process(self.process)

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self._wake.set()
        child, self._child = self._child, None
        if child is not None:
            child.join(timeout)
            if child.is_alive():
                log.warning("the indexing worker process did not stop in %.0f s; terminated", timeout)
                child.terminate()
                child.join(5)
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def drain_once(self) -> int:
        """Index one batch of queued events; returns how many rows it consumed (0: none queued)."""
        with self.sessions() as session:
            rows = list(
                session.execute(
                    select(PendingEvent.id, PendingEvent.payload).order_by(PendingEvent.id).limit(self.batch)
                )
            )
        if not rows:
            return 0
        events: list[NotificationEvent] = []
        bad: list[int] = []
        for row_id, payload in rows:
            try:
                events.append(NotificationEvent.model_validate_json(payload))
            except (ValidationError, ValueError) as err:
                log.warning("queued event %d does not parse (%s); dropped, left for reconcile", row_id, err)
                bad.append(row_id)
        ids = [row_id for row_id, _ in rows]
        if events:
            result = handle_events(
                events, self.sessions, self.reads(), cache=self.cache, done=ids, pool=self._pool
            )
            if result["deferred"]:
                log.info("batch of %d: %d left for reconcile", len(rows), result["deferred"])
        else:
            with self.sessions.begin() as session:
                session.execute(delete(PendingEvent).where(PendingEvent.id.in_(bad)))
        return len(rows)

    def wait_drained(self, timeout: float = 30.0) -> None:
        """Block until nothing is queued (every row applied or dropped); for tests and tools.

        Raises :class:`TimeoutError` after ``timeout`` seconds (the worker is stopped, or stuck).
        Deterministic: it wakes on each finished batch, and looks at the table itself.
        """
        deadline = time.monotonic() + timeout
        with self._done:
            while pending_count(self.sessions) > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"events still queued after {timeout} s")
                # a worker process cannot wake this condition: look at the table more often
                self._done.wait(min(left, self.poll if self._child is None else 0.05))

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()  # a notify from here on wakes the wait below
            try:
                consumed = self.drain_once()
            except Exception:
                log.exception("indexing batch failed; its events stay queued and are retried")
                self._stopping.wait(1.0)
                continue
            with self._done:
                self._done.notify_all()
            if consumed >= self.batch:
                continue  # a backlog: no waiting
            if not consumed:
                self._wake.wait(self.poll)
            # Let the stream gather into a batch, also after a partial one: a batch has a fixed
            # cost (~20 statements, one commit) that ten events a batch paid twice over per event
            # while a steady stream of POSTs kept the queue short (docs/service.md)
            if not self._stopping.is_set() and self.linger > 0:
                self._stopping.wait(self.linger)


def _process_main(
    process: WorkerProcess,
    options: dict[str, Any],
    wake: Any,
    stopping: Any,
    log_level: int,
    log_format: str | None,
) -> None:
    """The worker process: its own engine, registry reader and thread pool, the same loop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the service stops us
    logging.basicConfig(level=log_level, format=log_format or logging.BASIC_FORMAT)
    logging.getLogger("httpx").setLevel(max(log_level, logging.WARNING))
    parent = os.getppid()

    def orphaned() -> None:  # the service was killed (no stop()): do not outlive it
        while not stopping.wait(1.0):
            if os.getppid() != parent:
                stopping.set()
                wake.set()

    threading.Thread(target=orphaned, name="ecr-index-parent", daemon=True).start()
    engine = make_engine(process.database_url)
    reads = process.reads()
    queue = EventQueue(session_factory(engine, write=True), lambda: reads, **options)
    queue._wake, queue._stopping = wake, stopping
    queue._pool = ThreadPoolExecutor(max_workers=queue.workers, thread_name_prefix="ecr-fetch")
    try:
        queue._run()
    finally:
        queue._pool.shutdown(wait=True, cancel_futures=True)
        reads.close()
        engine.dispose()
