"""The agent's one SQLite file: opening it safely and running transactions across threads.

WAL with ``synchronous=FULL``: a commit that returned survives a power cut. The main connection
is shared by the pipeline and whoever reads figures, under one lock, and keeps a state change
and the events it causes in one transaction.

The link thread, which sends, has a second connection (``sender``), with ``synchronous=NORMAL`` and its
own lock, for what it does many times a second: reading due rows and deleting acknowledged
ones. Losing a delete to a power cut only means the row is sent again (HQ deduplicates on
event_id), and the next FULL commit on the main connection syncs the WAL frames before it
anyway. Measured on the store box: with both on one FULL connection, a click-and-collect
notification waited behind the sender's fsyncs and checkpoints (p99 523 ms from sighting to
HQ); split, p99 falls to tens of milliseconds (benchmarks/notification_latency.py). The sender
connection also runs the WAL checkpoints, off the main loop's path.

Two faults a store box really sees are handled here rather than left to crash the daemon:

- **An unreadable file at start** (a power cut on a worn SD card, a bad sector): the file is
  moved aside as ``<name>.corrupt-<time>``, a new one is created, and ``alarm`` says so. The
  outbox then salvages what unsent messages it can read from the quarantined copy.
- **A full filesystem.** A WAL database can wedge on a full disk: a checkpoint needs room to
  grow the main file, so even a DELETE cannot free space (measured on a 1 MiB tmpfs). A
  *reserve* file of ``reserve_bytes`` is kept next to the database; on ``SQLITE_FULL``,
  ``write`` gives it up, checkpoints, lets the space makers (the outbox evicts telemetry) free
  pages, hands them back to the filesystem (``auto_vacuum=INCREMENTAL``) and retries once. The
  reserve is rebuilt when the filesystem has room again (``restore_reserve``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import sqlite_utils

from edge_agent.core.errors import DiskFull

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

MAIN_CHECKPOINT_PAGES = 16_384  # 64 MiB of WAL at the default page size
SENDER_CHECKPOINT_PAGES = 1000  # SQLite's default
# Rebuild the reserve only when the filesystem has this many times its size free: the reserve,
# room for new data, and the WAL's share (journal_size_limit), so a full spell does not flap.
RESERVE_MARGIN = 3
SHRINK_ROUND_PAGES = 64
# After a full-disk round that found nothing to evict, writes are refused at once for this long.
FRUITLESS_RETRY_S = 1.0
# How long the start waits for the integrity check. quick_check reads every page: 11.9 s cold for
# a 381 MB file on the store box, all of it before the first sighting, and SQLite 3.40 cannot
# interrupt its walk of a b-tree. So the check runs on a connection of its own in a thread from
# the start: a small file's answer comes within this half second (and a bad file is moved aside
# before it is used, as before); a larger file's comes later, as ``integrity`` in status and an
# alarm if it is bad. The schema is read before anything else either way (a garbage header).
START_CHECK_S = 0.5
# Housekeeping hands freed pages back to the filesystem, a little at a time: beyond
# FREE_PAGES_KEPT free pages (8 MiB, what a day's churn of outbox rows reuses anyway), at most
# VACUUM_PAGES_PER_ROUND (1 MiB, a few milliseconds of page moves and one commit) per round, so
# a file that grew during an outage shrinks back over hours without a pause of the main loop.
FREE_PAGES_KEPT = 2048
VACUUM_PAGES_PER_ROUND = 256

# Escapes LIKE's wildcards: a customer id "cust_1" must not match "custX1" ("_" is any character).
LIKE_ESCAPE = "\\"


def names_customer(customer_id: str) -> str:
    """A ``LIKE ? ESCAPE '\\'`` pattern for JSON text that names ``customer_id`` (anywhere in
    it: messages at the top level, lists and receipts in their records), for erasure."""
    quoted = json.dumps(customer_id)
    escaped = quoted.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", "\\%").replace("_", "\\_")
    return f'%"customer_id":{escaped}%'


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL"


class Database:
    def __init__(
        self,
        path: str | Path,
        reserve_bytes: int = 0,
        *,
        defer_check: bool = False,
        found_bad: str | None = None,
    ) -> None:
        """``reserve_bytes``: room kept in a file beside the database, given up on a full disk so
        the WAL can be checkpointed and telemetry evicted (0: no reserve).

        ``defer_check``: do not wait for the start's integrity check here; the caller reads the
        file meanwhile (the daemon loads its registry) and then calls ``settle_check``, which
        waits out the rest of ``START_CHECK_S``. A file found bad within that time is then opened
        again with ``found_bad`` (what was found), which moves it aside before use unchecked."""
        self.path = Path(path)
        self.reserve_path = self.path.with_name(self.path.name + ".reserve")
        self.reserve_bytes = reserve_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Set when the file found at start could not be read and was moved aside.
        self.quarantined: Path | None = None
        self.alarms: dict[str, str] = {}  # what is wrong with storage now, by cause
        self._fruitless_since: float | None = None  # when the full-disk routine last freed nothing
        # Functions that free room in the database when the disk is full (the outbox's eviction).
        self.space_makers: list[Callable[[], int]] = []
        # "ok", "pending" (the check goes on in the background), or what it found.
        self.integrity = "ok"
        self._checking: sqlite3.Connection | None = None
        self._background: IntegrityCheck | None = None
        self._deferred: tuple[IntegrityCheck, float] | None = None  # the check and when it began
        problem = found_bad or _unreadable(self.path)
        if problem is None and self.path.exists() and self.path.stat().st_size and defer_check:
            self.integrity = "pending"
            self._deferred = (IntegrityCheck(self.path, self._integrity_found), time.monotonic())
        elif problem is None and self.path.exists() and self.path.stat().st_size:
            check = IntegrityCheck(self.path, self._integrity_found)
            if check.done.wait(START_CHECK_S):
                if check.result != "ok":
                    problem = f"integrity check: {check.result}"
            else:
                self.integrity = "pending"
                self._background = check
                check.hand_over()
        if problem is not None:
            self._quarantine(problem)
        conn = self._open_main()
        self.db = sqlite_utils.Database(conn)
        self.lock = threading.RLock()
        self._depth = 0
        self._rollback_hooks: list[Callable[[], None]] = []
        sender = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        sender.execute("PRAGMA synchronous=NORMAL")
        sender.execute("PRAGMA secure_delete=ON")
        self._limit_wal(sender, SENDER_CHECKPOINT_PAGES)
        self.sender = sender
        self.sender_lock = threading.Lock()
        # Both connections take this before they write. SQLite would serialise them anyway, but
        # its busy handler waits in sleeps of up to tens of milliseconds; a lock wakes the
        # waiter the moment the other commits.
        self.write_lock = threading.Lock()
        self.restore_reserve()

    def _open_main(self) -> sqlite3.Connection:
        new = not self.path.exists() or self.path.stat().st_size == 0
        # Identity keys live here: owner-only from the first byte written.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so no library commits for us.
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        if new:  # freed pages can go back to the filesystem (only settable before the first table)
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        # Deleted content is overwritten, not left in free pages: an erased customer's identity
        # key must not survive in the file (checkpoint() then clears the WAL's copies).
        conn.execute("PRAGMA secure_delete=ON")
        # Checkpoints belong to the sender connection; the main one steps in only if the WAL
        # grows large while nothing is acknowledged (the broker away for long). With a reserve,
        # the WAL never holds more than the reserve can absorb when a full disk needs a checkpoint.
        self._limit_wal(conn, MAIN_CHECKPOINT_PAGES)
        return conn

    def _limit_wal(self, conn: sqlite3.Connection, pages: int) -> None:
        """With a reserve, no connection lets the WAL outgrow what the reserve can absorb when a
        full disk needs a checkpoint (autocheckpoint is a per-connection setting)."""
        if self.reserve_bytes:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            pages = max(64, min(pages, self.reserve_bytes // 2 // page_size))
            conn.execute(f"PRAGMA journal_size_limit={self.reserve_bytes // 2}")
        conn.execute(f"PRAGMA wal_autocheckpoint={pages}")

    def _quarantine(self, problem: str) -> None:
        """Move an unreadable database (and its WAL) aside, keeping it for salvage and forensics."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                shutil.move(source, f"{target}{suffix}")
        self.quarantined = target
        self.alarms["database"] = (
            f"database unreadable at start ({problem}): moved to {target.name} and started a new "
            "one; HQ must resend the registry, orders and lists"
        )
        _LOGGER.error("%s", self.alarms["database"])

    # ------------------------------------------------------------------ transactions

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic, durable unit of work; nested calls join the outer transaction."""
        with self.lock:
            conn = self.db.conn
            outer = self._depth == 0
            if outer:
                self.write_lock.acquire()
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except BaseException:
                    self.write_lock.release()
                    raise
            self._depth += 1
            try:
                yield conn
                if outer:
                    conn.execute("COMMIT")
            except BaseException:
                if outer:
                    self._roll_back(conn)
                raise
            finally:
                self._depth -= 1
                if outer:
                    self._rollback_hooks.clear()
                    self.write_lock.release()

    def _roll_back(self, conn: sqlite3.Connection) -> None:
        # SQLite may already have rolled back on its own (it does on SQLITE_FULL): a second
        # ROLLBACK would raise and hide the real error.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        for hook in reversed(self._rollback_hooks):
            hook()

    def on_rollback(self, hook: Callable[[], None]) -> None:
        """Undo in-memory bookkeeping if the current transaction does not commit."""
        if self._depth:
            self._rollback_hooks.append(hook)

    def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in a transaction; on a full disk make room by policy and retry once.

        Raises DiskFull if there is still no room: the caller decides what is dropped (and
        reports it), and nothing already committed is touched.
        """
        with self.lock:  # one thread's unit of work from first try to retry
            nested = self._depth > 0
            try:
                with self.transaction() as conn:
                    result = work(conn)
            except sqlite3.OperationalError as exc:
                if not is_disk_full(exc) or nested:
                    raise
            else:
                if not self.reserve_bytes and "disk" in self.alarms:
                    self.alarms.pop("disk", None)  # no reserve to wait for: writes fit again
                    self._fruitless_since = None
                return result
            if not self.make_space() and self._fruitless_since is not None:
                # Nothing to evict (only transactional rows): refuse at once instead of running
                # the whole routine for every event until the disk has room again.
                raise DiskFull(f"no room for a write in {self.path}: nothing left to evict")
            try:
                with self.transaction() as conn:
                    return work(conn)
            except sqlite3.OperationalError as exc:
                if is_disk_full(exc):
                    raise DiskFull(f"no room for a write in {self.path} even after making space") from exc
                raise

    def make_space(self) -> int:
        """The full-disk routine: give up the reserve if needed, checkpoint, evict, shrink.

        Returns the bytes freed. After a round that freed nothing, the next ones within
        ``FRUITLESS_RETRY_S`` return 0 at once (``_fruitless_since`` is then set).
        """
        now = time.monotonic()
        if self._fruitless_since is not None and now - self._fruitless_since < FRUITLESS_RETRY_S:
            return 0
        self._fruitless_since = None
        with self.lock:
            first = "disk" not in self.alarms
            self.alarms["disk"] = f"filesystem of {self.path} is full"
            # ERROR once per full spell; each later round is routine until the alarm clears.
            _LOGGER.log(logging.ERROR if first else logging.DEBUG, "%s: making room", self.alarms["disk"])
            if not self.try_checkpoint():
                self._release_reserve()
                self.try_checkpoint()
            freed = 0
            for make in self.space_makers:
                try:
                    freed += make()
                except sqlite3.OperationalError as exc:
                    if not is_disk_full(exc):
                        raise
                    _LOGGER.error("could not free room in the database: %s", exc)
            self._shrink()
            if not freed:
                self._fruitless_since = now
            return freed

    def try_checkpoint(self) -> bool:
        """Checkpoint and truncate the WAL if the disk allows; whether it completed."""
        with self.lock, self.write_lock:
            try:
                busy, _, _ = self.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.OperationalError as exc:
                if not is_disk_full(exc):
                    raise
                return False
        return bool(busy == 0)

    def _shrink(self) -> None:
        """Give freed pages back to the filesystem, so the reserve can be rebuilt: in rounds, each
        checkpointed, since moving pages fills the WAL like any write."""
        conn = self.db.conn
        while conn.execute("PRAGMA freelist_count").fetchone()[0]:  # cheap when there is nothing
            with self.write_lock:
                try:
                    conn.executescript(f"PRAGMA incremental_vacuum({SHRINK_ROUND_PAGES});")  # all of them
                except sqlite3.OperationalError as exc:
                    if not is_disk_full(exc):
                        raise
                    return
            if not self.try_checkpoint():
                return

    def give_back_free_pages(self) -> int:
        """One bounded round of incremental vacuum (see FREE_PAGES_KEPT); the pages freed."""
        with self.lock:
            conn = self.db.conn
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            if free <= FREE_PAGES_KEPT:
                return 0
            pages = min(VACUUM_PAGES_PER_ROUND, free - FREE_PAGES_KEPT)
            with self.write_lock:
                # executescript steps the pragma to completion; execute() frees one page only
                conn.executescript(f"PRAGMA incremental_vacuum({pages});")
            return int(free - conn.execute("PRAGMA freelist_count").fetchone()[0])

    def _release_reserve(self) -> None:
        if self.reserve_path.exists():
            self.reserve_path.unlink()
            _LOGGER.error("disk full: released the %d-byte reserve beside the database", self.reserve_bytes)

    def restore_reserve(self) -> bool:
        """(Re)build the reserve if the filesystem has room; clear the disk alarm when it does."""
        if not self.reserve_bytes:
            return True
        if self.reserve_path.exists() and self.reserve_path.stat().st_size >= self.reserve_bytes:
            return True
        needed = RESERVE_MARGIN * self.reserve_bytes
        if shutil.disk_usage(self.path.parent).free < needed:
            with self.lock:
                self._shrink()  # pages HQ's acknowledgements freed go back to the filesystem
            if shutil.disk_usage(self.path.parent).free < needed:
                return False
        fd = os.open(self.reserve_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, self.reserve_bytes)  # real blocks, not a sparse promise
        except OSError as exc:
            _LOGGER.warning("could not build the disk reserve: %s", exc)
            os.close(fd)
            self.reserve_path.unlink(missing_ok=True)
            return False
        os.close(fd)
        self._fruitless_since = None
        if self.alarms.pop("disk", None) is not None:
            _LOGGER.warning("disk has room again: reserve rebuilt")
        return True

    @contextlib.contextmanager
    def sender_transaction(self) -> Iterator[sqlite3.Connection]:
        """A write on the sender's connection (not durable on its own: see the module doc)."""
        with self.sender_lock, self.write_lock:
            conn = self.sender
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it (after an erasure)."""
        with self.lock, self.write_lock:
            self.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def check_integrity(self) -> str:
        """A full ``quick_check`` now, on a read-only connection of its own (WAL: writers go on
        meanwhile), reported as the background one is."""
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=30)
        self._checking = conn
        try:
            result = _full_quick_check(conn)
        except sqlite3.DatabaseError as exc:
            result = str(exc)
        finally:
            self._checking = None
            conn.close()
        self._integrity_found(result)
        return self.integrity

    def wait_integrity(self, timeout: float) -> str:
        """The background check's result once it is in (or "pending" after ``timeout``)."""
        if self._background is not None:
            self._background.done.wait(timeout)
        return self.integrity

    def settle_check(self) -> str | None:
        """For ``defer_check``: wait for the start's check until ``START_CHECK_S`` after it
        began; what it found wrong if it came back bad by then (the caller opens the file again),
        else None (ok, or still going on in the background as ``pending``)."""
        if self._deferred is None:
            return None
        check, began = self._deferred
        self._deferred = None
        if check.done.wait(max(0.0, began + START_CHECK_S - time.monotonic())):
            if check.result != "ok":
                return f"integrity check: {check.result}"
            self.integrity = "ok"
            return None
        self._background = check
        check.hand_over()
        return None

    def _integrity_found(self, result: str) -> None:
        """What a full check found: ``integrity``, and an alarm and an ERROR log if it is bad.
        The running file is not moved aside: the next start's check decides that."""
        if result == "interrupted":  # closed meanwhile: nothing learnt
            return
        self.integrity = result
        if result != "ok":
            self.alarms["integrity"] = f"database integrity check found: {result}"
            _LOGGER.error("%s", self.alarms["integrity"])
        else:
            _LOGGER.info("database integrity check: ok")

    def close(self) -> None:
        deferred = None if self._deferred is None else self._deferred[0]
        for checking in (self._checking, self._background, deferred):
            if checking is not None:
                checking.interrupt()
        with self.sender_lock:
            self.sender.close()
        with self.lock:
            self.db.conn.close()


class IntegrityCheck:
    """``quick_check`` of the file on a connection of its own, in a thread of its own."""

    def __init__(self, path: Path, found: Callable[[str], None]) -> None:
        """``found`` is told the result once the start stopped waiting (``hand_over``); the
        start reads ``result`` itself when it comes in time."""
        self._conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, check_same_thread=False, timeout=30)
        self._found = found
        self._lock = threading.Lock()
        self._report = self._finished = False
        self.result = "interrupted"
        self.done = threading.Event()
        threading.Thread(target=self._run, name="edge-agent-integrity", daemon=True).start()

    def _run(self) -> None:
        try:
            self.result = _full_quick_check(self._conn)
        except sqlite3.DatabaseError as exc:
            self.result = str(exc)
        finally:
            self._conn.close()
        with self._lock:
            self._finished = True
            report = self._report
        if report:
            self._found(self.result)
        self.done.set()  # after the report: whoever waits for it sees its effect

    def hand_over(self) -> None:
        """The start waits no longer: the result, when it comes, goes to ``found``."""
        with self._lock:
            self._report = True
            finished = self._finished
        if finished:
            self._found(self.result)

    def interrupt(self) -> None:
        if not self.done.is_set():
            with contextlib.suppress(sqlite3.ProgrammingError):  # closed in the meantime
                self._conn.interrupt()


def _full_quick_check(conn: sqlite3.Connection) -> str:
    """Every page read, index cross-checks skipped; the first problem only."""
    return str(conn.execute("PRAGMA quick_check(1)").fetchone()[0])


def _unreadable(path: Path) -> str | None:
    """Why the database file at ``path`` cannot be opened or its schema read, or None if it can
    (or is absent): the part of the check that is quick whatever the size."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=30)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return None
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        conn.close()
