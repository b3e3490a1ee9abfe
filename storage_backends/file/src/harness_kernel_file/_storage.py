"""``FileStorage``: a directory per session, an fsynced JSON-lines log, fcntl-fenced writers.

Layout under the root (see docs/storage/file.md)::

    FORMAT                         layout name and version
    sessions/<encoded id>/.lock    flock target: exclusive for writers, shared for readers
    sessions/<encoded id>/record.json
    sessions/<encoded id>/events.jsonl
    index/<scope>/<entry>          empty files whose names give the listing order

Each line of ``events.jsonl`` is one appended batch,
``{"first":F,"last":L,"events":[<encode_event>, ...]}``, written with one ``write`` and
fdatasynced before ``append`` returns. A batch is on disk whole (a complete line) or is a
torn tail without its newline, which the next locked access cuts off. The header before
``"events"`` lets the tail and skipped lines be read without parsing the events.
"""

from __future__ import annotations

import bisect
import errno
import fcntl
import functools
import json
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import trio

from harness_kernel import Event, SessionRecord
from harness_kernel.codec import (
    decode_event,
    decode_record,
    dumps,
    encode_event,
    encode_record,
    loads,
)
from harness_kernel.contracts import (
    ListOrder,
    Page,
    SessionFilter,
    SessionStorage,
    StorageCapabilities,
)
from harness_kernel.errors import Conflict, SessionExists, SessionNotFound, StorageError
from harness_kernel.storage import (
    check_batch,
    check_incarnation,
    gc_paused,
    json_bytes,
    page_in_order,
)

from ._names import (
    encode_id,
    entry_name,
    entry_session,
    index_scopes,
    listing_scope,
    parse_cursor,
    sortable_time,
)

__all__ = ["LAYOUT_VERSION", "FileStorage"]

T = TypeVar("T")

LAYOUT_VERSION = 1
LOCK = ".lock"
RECORD = "record.json"
EVENTS = "events.jsonl"
_HEADER = re.compile(rb'^\{"first":(\d+),"last":(\d+),"events":')
_HEADER_AT = re.compile(_HEADER.pattern[1:])  # the same, matched at a given position
_CHUNK = 64 * 1024
_SPARSE_EVERY = 64  # remember the offset of every 64th line for read(after_seq=...)




def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rfind_newline(fd: int, before: int) -> int:
    """Offset of the last ``\\n`` strictly before ``before``, or -1; reads backwards."""
    end, chunk = before, 4096  # most lines are short: start small, grow
    while end > 0:
        start = max(0, end - chunk)
        found = os.pread(fd, end - start, start).rfind(b"\n")
        if found >= 0:
            return start + found
        end, chunk = start, min(chunk * 4, _CHUNK)
    return -1


class FileStorage(SessionStorage):
    """Sessions as directories of plain files under ``root``; see the module docstring.

    Safe for several processes on one host (or a filesystem with working ``flock``):
    ``append`` and ``save`` hold an exclusive lock on the session while they check and
    write, so ``expected_seq`` and ``expected_revision`` are enforced between processes.
    """

    capabilities: ClassVar[StorageCapabilities] = StorageCapabilities(cross_process_fencing=True, durable=True)

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True, max_threads: int = 8) -> None:
        if max_threads < 1:
            raise ValueError("max_threads must be at least 1")
        self.root = Path(root).absolute()
        self._sessions = self.root / "sessions"
        self._index = self.root / "index"
        self._fsync = fsync
        self._limiter = trio.CapacityLimiter(max_threads)
        self._ready = False
        self._closed = False
        # encoded id -> sorted [(first seq of a line, byte offset of the line)]
        self._sparse: dict[str, list[tuple[int, int]]] = {}
        self._sparse_lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StorageError("the file storage is closed")
        return await trio.to_thread.run_sync(functools.partial(self._guarded, fn, *args), limiter=self._limiter)

    def _guarded(self, fn: Callable[..., T], *args: Any) -> T:
        if not self._ready:
            self._prepare_root()
        try:
            return fn(*args)
        except OSError as exc:
            raise StorageError(f"file storage I/O failed: {exc.strerror or exc.__class__.__name__}") from exc

    def _prepare_root(self) -> None:
        for directory in (self.root, self._sessions, self._index):
            directory.mkdir(parents=True, exist_ok=True)
        marker = self.root / "FORMAT"
        try:
            found = json.loads(marker.read_text())
        except FileNotFoundError:
            self._replace(marker, dumps({"layout": "harness-kernel-file", "version": LAYOUT_VERSION}).encode())
        except ValueError as exc:
            raise StorageError(f"{marker} is not a harness-kernel-file marker") from exc
        else:
            version = found.get("version") if isinstance(found, dict) else None
            if not isinstance(version, int) or version > LAYOUT_VERSION:
                raise StorageError(
                    f"{self.root} uses file layout {version!r}; this harness-kernel-file reads "
                    f"up to {LAYOUT_VERSION}: upgrade it"
                )
        self._ready = True

    def _replace(self, path: Path, data: bytes) -> None:
        """Write ``path`` atomically: temp file, fsync, rename, directory fsync."""
        tmp = path.with_name(f"{path.name}.tmp-{secrets.token_hex(6)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            try:
                _write_all(fd, data)
                if self._fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            with _ignore_missing():
                os.unlink(tmp)
            raise
        if self._fsync:
            _fsync_dir(path.parent)

    @contextmanager
    def _locked(self, enc: str, *, exclusive: bool, create: bool = False) -> Iterator[Path | None]:
        """Hold the session's flock; yields its directory, or ``None`` if it has none.

        ``delete`` removes the lock file while holding it, so after acquiring, the path
        must still name the locked inode; otherwise the lock is on a dead file: retry.
        """
        directory = self._sessions / enc
        lock_path = directory / LOCK
        while True:
            if create:
                directory.mkdir(exist_ok=True)
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0), 0o644)
            except FileNotFoundError:
                if create:
                    continue
                yield None
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
                try:
                    current = os.stat(lock_path)
                except FileNotFoundError:
                    continue
                held = os.fstat(fd)
                if (current.st_dev, current.st_ino) != (held.st_dev, held.st_ino):
                    continue
                yield directory
                return
            finally:
                os.close(fd)  # closing the descriptor releases the flock

    # -- records --------------------------------------------------------------------

    def _read_record(self, directory: Path) -> SessionRecord | None:
        try:
            raw = (directory / RECORD).read_bytes()
        except FileNotFoundError:
            return None
        try:
            return decode_record(loads(raw))
        except ValueError as exc:
            raise StorageError(f"the record in {directory} is not valid JSON") from exc

    def _create(self, record: SessionRecord) -> None:
        enc = encode_id(record.id)
        payload = json_bytes(encode_record(record))
        with self._locked(enc, exclusive=True, create=True) as directory:
            assert directory is not None
            if (directory / RECORD).exists():
                raise SessionExists(f"session '{record.id}' already exists")
            # A log left by a create or delete that crashed must not leak into this session:
            # replace it with an empty file (a new inode) before the record makes it visible.
            self._replace(directory / EVENTS, b"")
            self._forget_offsets(enc)
            for scope in index_scopes(record.agent, dict(record.labels)):
                self._add_entry(scope, entry_name(record.created_at, record.id))
            if self._fsync:
                _fsync_dir(self._sessions)
            self._replace(directory / RECORD, payload)  # the commit point

    def _add_entry(self, scope: str, name: str) -> None:
        directory = self._index / scope
        try:
            directory.mkdir()
        except FileExistsError:
            pass
        else:
            if self._fsync:
                _fsync_dir(self._index)
        fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        os.close(fd)
        if self._fsync:
            _fsync_dir(directory)

    def _load(self, session_id: str) -> SessionRecord | None:
        return self._read_record(self._sessions / encode_id(session_id))

    def _save(self, record: SessionRecord, expected_revision: int) -> None:
        if record.revision != expected_revision + 1:
            raise ValueError("record.revision must be expected_revision + 1")
        payload = json_bytes(encode_record(record))
        with self._locked(encode_id(record.id), exclusive=True) as directory:
            stored = self._read_record(directory) if directory else None
            if directory is None or stored is None:
                raise SessionNotFound(f"session '{record.id}' not found")
            check_incarnation(record.id, stored.incarnation, record.incarnation)
            if stored.revision != expected_revision:
                raise Conflict(
                    f"session '{record.id}' is at revision {stored.revision}, not {expected_revision}"
                )
            self._replace(directory / RECORD, payload)

    def _delete(self, session_id: str) -> bool:
        enc = encode_id(session_id)
        with self._locked(enc, exclusive=True) as directory:
            if directory is None:
                return False
            record = self._read_record(directory)
            if record is not None:
                os.unlink(directory / RECORD)  # the commit point: the session no longer exists
                if self._fsync:
                    _fsync_dir(directory)
                name = entry_name(record.created_at, record.id)
                for scope in index_scopes(record.agent, dict(record.labels)):
                    with _ignore_missing():
                        os.unlink(self._index / scope / name)
            self._forget_offsets(enc)
            for child in directory.iterdir():
                if child.name == EVENTS or child.name.startswith((f"{RECORD}.tmp-", f"{EVENTS}.tmp-")):
                    with _ignore_missing():
                        os.unlink(child)
            os.unlink(directory / LOCK)  # waiters see a dead lock file and retry
            try:
                directory.rmdir()
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            if self._fsync:
                _fsync_dir(self._sessions)
            return record is not None

    # -- the log --------------------------------------------------------------------

    @contextmanager
    def _log(self, session_id: str, *, exclusive: bool) -> Iterator[tuple[str, int, int]]:
        """Hold the session's lock with its log open: yields ``(enc, fd, end)``.

        ``end`` is the size of the log's complete lines. A torn tail (a batch cut short by
        a crash) is cut off here, under the exclusive lock: a shared holder that finds one
        trades its lock for the exclusive one first.
        """
        enc = encode_id(session_id)
        want_exclusive = exclusive
        while True:
            with self._locked(enc, exclusive=want_exclusive) as directory:
                if directory is None or not (directory / RECORD).exists():
                    raise SessionNotFound(f"session '{session_id}' not found")
                try:
                    fd = os.open(directory / EVENTS, (os.O_RDWR | os.O_APPEND) if want_exclusive else os.O_RDONLY)
                except FileNotFoundError:
                    raise StorageError(f"session '{session_id}' has a record but no log") from None
                try:
                    size = os.fstat(fd).st_size
                    end = size
                    if size and os.pread(fd, 1, size - 1) != b"\n":
                        if not want_exclusive:
                            want_exclusive = True
                            continue
                        end = _rfind_newline(fd, size) + 1
                        os.ftruncate(fd, end)
                        if self._fsync:
                            os.fsync(fd)
                    yield enc, fd, end
                    return
                finally:
                    os.close(fd)

    def _last_seq_at(self, fd: int, end: int) -> int:
        if end == 0:
            return 0
        start = _rfind_newline(fd, end - 1) + 1
        match = _HEADER.match(os.pread(fd, min(64, end - start), start))
        if match is None:
            raise StorageError("the last line of the log is not a batch written by this storage")
        return int(match.group(2))

    def _append(self, session_id: str, events: Sequence[Event], expected_seq: int, incarnation: str | None) -> None:
        check_batch(events, expected_seq)
        line = b""
        if events:
            body = {"first": events[0].seq, "last": events[-1].seq, "events": [encode_event(e) for e in events]}
            line = json_bytes(body) + b"\n"
        with self._log(session_id, exclusive=True) as (enc, fd, end):
            if incarnation:  # under the session's lock, so delete and create cannot interleave
                stored = self._read_record(self._sessions / enc)
                check_incarnation(session_id, stored.incarnation if stored else "", incarnation)
            last = self._last_seq_at(fd, end)
            if last != expected_seq:
                raise Conflict(f"session '{session_id}' is at seq {last}, not {expected_seq}")
            if not line:
                return
            _write_all(fd, line)
            if self._fsync:
                os.fdatasync(fd)
            self._remember_offset(enc, events[0].seq, end, force=False)

    def _last_seq(self, session_id: str) -> int:
        with self._log(session_id, exclusive=False) as (_enc, fd, end):
            return self._last_seq_at(fd, end)

    def _read(self, session_id: str, after_seq: int, limit: int | None) -> list[Event]:
        after_seq = max(after_seq, 0)
        if limit is not None and limit <= 0:
            with self._log(session_id, exclusive=False):
                return []
        with self._log(session_id, exclusive=False) as (enc, fd, end):
            start = self._start_offset(enc, fd, after_seq)
            data = os.pread(fd, end - start, start) if end > start else b""
        return self._decode_lines(enc, data, start, after_seq, limit, session_id)

    def _decode_lines(
        self, enc: str, data: bytes, offset: int, after_seq: int, limit: int | None, session_id: str
    ) -> list[Event]:
        lines = data.split(b"\n")[:-1]
        wanted: list[bytes] = []
        expected_first: int | None = None
        for index, line in enumerate(lines):
            match = _HEADER.match(line)
            if match is None:
                raise StorageError(f"the log of session '{session_id}' has a corrupt line at byte {offset}")
            first, last = int(match.group(1)), int(match.group(2))
            if expected_first is not None and first != expected_first:
                raise StorageError(f"the log of session '{session_id}' is not contiguous at seq {first}")
            expected_first = last + 1
            if index % _SPARSE_EVERY == 0:
                self._remember_offset(enc, first, offset, force=True)
            offset += len(line) + 1
            if last > after_seq:
                wanted.append(line)
                if limit is not None and last - after_seq >= limit:
                    break
        if not wanted:
            return []
        events: list[Event] = []
        with gc_paused(expected_first - after_seq if expected_first else 0):
            try:
                batches = loads(b"[" + b",".join(wanted) + b"]")
            except ValueError as exc:
                raise StorageError(f"the log of session '{session_id}' has a line that is not valid JSON") from exc
            for batch in batches:
                for payload in batch["events"]:
                    if payload["seq"] > after_seq:
                        events.append(decode_event(payload))
        return events if limit is None else events[:limit]

    # -- the sparse offset index (per process; validated before use) ---------------

    def _remember_offset(self, enc: str, first: int, offset: int, *, force: bool) -> None:
        with self._sparse_lock:
            marks = self._sparse.setdefault(enc, [])
            if marks and marks[-1][0] >= first:
                if force:
                    position = bisect.bisect_left(marks, (first, -1))
                    if position == len(marks) or marks[position][0] != first:
                        marks.insert(position, (first, offset))
                return
            if force or not marks or first - marks[-1][0] >= _SPARSE_EVERY:
                marks.append((first, offset))

    def _forget_offsets(self, enc: str) -> None:
        with self._sparse_lock:
            self._sparse.pop(enc, None)

    def _start_offset(self, enc: str, fd: int, after_seq: int) -> int:
        """Byte offset of a line starting at or before ``after_seq + 1``: a known one, or 0.

        A remembered offset is trusted only if a line with the remembered first seq starts
        there, so a log replaced by another process is never misread.
        """
        with self._sparse_lock:
            marks = list(self._sparse.get(enc, ()))
        position = bisect.bisect_right(marks, (after_seq + 1, float("inf"))) - 1
        if position < 0:
            return self._offset_from_end(fd, after_seq) if after_seq > 0 else 0
        first, offset = marks[position]
        if offset and os.pread(fd, 1, offset - 1) != b"\n":
            self._forget_offsets(enc)
            return 0
        match = _HEADER.match(os.pread(fd, 64, offset))
        if match is None or int(match.group(1)) != first:
            self._forget_offsets(enc)
            return 0
        return offset

    @staticmethod
    def _offset_from_end(fd: int, after_seq: int) -> int:
        """Byte offset of the last line starting at or before ``after_seq + 1``, found by
        reading backwards from the end: reading the tail of a long log (hydrating from a
        snapshot) costs the tail, not the log. 0 when no such line is found."""
        end = os.fstat(fd).st_size
        position, buffer = end, b""
        while position > 0:
            start = max(0, position - _CHUNK)
            buffer = os.pread(fd, position - start, start) + buffer
            position = start
            cut = len(buffer) - 1  # the log ends with a newline: skip it
            while True:
                newline = buffer.rfind(b"\n", 0, cut)
                if newline < 0:
                    break
                match = _HEADER_AT.match(buffer, newline + 1)
                if match is not None and int(match.group(1)) <= after_seq + 1:
                    return position + newline + 1
                cut = newline
            if position == 0:
                return 0
        return 0

    # -- listing --------------------------------------------------------------------

    def _list_by_update(self, filter: SessionFilter, limit: int, cursor: str | None, order: ListOrder) -> Page:
        # The index is kept in creation order only: every record of the partition is read.
        try:
            names = os.listdir(self._index / listing_scope(filter))
        except FileNotFoundError:
            names = []
        records: list[SessionRecord] = []
        for name in names:
            parsed = entry_session(name)
            if parsed is None:
                continue
            record = self._read_record(self._sessions / encode_id(parsed[1]))
            if record is not None and record.id == parsed[1] and sortable_time(record.created_at) == parsed[0]:
                records.append(record)
        return page_in_order(records, filter, limit, cursor, order)

    def _list(self, filter: SessionFilter, limit: int, cursor: str | None, order: ListOrder = "created") -> Page:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if order != "created":
            return self._list_by_update(filter, limit, cursor, order)
        after = parse_cursor(cursor) if cursor is not None else None
        try:
            names = os.listdir(self._index / listing_scope(filter))
        except FileNotFoundError:
            names = []
        names.sort(reverse=True)
        if after is not None:
            names = names[_first_below(names, after) :]
        found: list[tuple[str, SessionRecord]] = []
        for name in names:
            parsed = entry_session(name)
            if parsed is None:
                continue
            stamp, session_id = parsed
            record = self._read_record(self._sessions / encode_id(session_id))
            # An entry whose record is gone or younger is left over from a crash: skip it.
            if record is None or record.id != session_id or sortable_time(record.created_at) != stamp:
                continue
            if filter.matches(record):
                found.append((name, record))
                if len(found) > limit:
                    break
        page = found[:limit]
        next_cursor = page[-1][0] if len(found) > limit else None
        return Page(tuple(record for _, record in page), next_cursor)

    # -- the contract ---------------------------------------------------------------

    async def create(self, record: SessionRecord) -> None:
        await self._run(self._create, record)

    async def load(self, session_id: str) -> SessionRecord | None:
        return await self._run(self._load, session_id)

    async def save(self, record: SessionRecord, expected_revision: int) -> None:
        await self._run(self._save, record, expected_revision)

    async def append(
        self, session_id: str, events: Sequence[Event], expected_seq: int, *, incarnation: str | None = None
    ) -> None:
        await self._run(self._append, session_id, list(events), expected_seq, incarnation)

    async def read(self, session_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        return await self._run(self._read, session_id, after_seq, limit)

    async def last_seq(self, session_id: str) -> int:
        return await self._run(self._last_seq, session_id)

    async def list(
        self, filter: SessionFilter, limit: int = 50, cursor: str | None = None, *, order: ListOrder = "created"
    ) -> Page:
        return await self._run(self._list, filter, limit, cursor, order)

    async def delete(self, session_id: str) -> bool:
        return await self._run(self._delete, session_id)

    async def aclose(self) -> None:
        self._closed = True


def _first_below(names_descending: list[str], bound: str) -> int:
    """Index of the first name strictly below ``bound`` in a descending list."""
    low, high = 0, len(names_descending)
    while low < high:
        middle = (low + high) // 2
        if names_descending[middle] >= bound:
            low = middle + 1
        else:
            high = middle
    return low


@contextmanager
def _ignore_missing() -> Iterator[None]:
    try:
        yield
    except FileNotFoundError:
        pass
