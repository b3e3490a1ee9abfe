"""``S3Storage``: session records, event logs and a listing index as S3 objects.

Keys under the configured prefix (see docs/storage/s3.md)::

    sessions/<id>/record.json                         {"generation", "record"}; If-Match on save
    sessions/<id>/<generation>/events/<first>.json    one appended batch; If-None-Match: *
    sessions/<id>/<generation>/segments/<first>-<last>.json   a copy of many batches, for reads
    index/<scope>/<order key>                         empty; ascending key order = listing order

The fence: a batch appended after seq ``n`` is created at ``events/<n + 1>`` with
``If-None-Match: *``, and is only attempted when ``n`` is known to end a batch, so two
writers that saw the same log race for the same key and S3 lets exactly one create it.
``generation`` is fresh for every ``create``: a writer still holding a deleted session's
state can never write into a new session of the same id.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
import trio
from botocore.exceptions import BotoCoreError, ClientError

from harness_kernel import Event, SessionRecord
from harness_kernel.codec import (
    decode_event,
    decode_record,
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
from harness_kernel.errors import (
    ConfigError,
    Conflict,
    SessionExists,
    SessionNotFound,
    StorageError,
)
from harness_kernel.storage import (
    check_batch,
    check_incarnation,
    decode_cursor,
    json_bytes,
    page_in_order,
)

from ._client import S3Client, error_code, is_missing, is_precondition_failed
from ._keys import encode_id, index_scopes, listing_scope, order_key, parse_order_key, seq_name
from ._probe import probe_conditional_writes, probe_key

__all__ = ["S3Storage"]

_log = logging.getLogger("harness_kernel_s3")

_BATCH = re.compile(r"/events/(\d{20})\.json$")
_SEGMENT = re.compile(r"/segments/(\d{20})-(\d{20})\.json$")


def _failed(operation: str, exc: BaseException) -> StorageError:
    return StorageError(f"S3 {operation} failed ({error_code(exc) or 'error'})")


def _read_json(response: dict[str, Any]) -> Any:
    try:
        return loads(response["Body"].read())
    except ValueError as exc:
        raise StorageError("an object in the bucket is not valid JSON") from exc


def _record_of(document: Any) -> SessionRecord:
    """The session record inside a ``record.json`` document."""
    if not isinstance(document, dict) or "record" not in document or "generation" not in document:
        raise StorageError("a record object in the bucket is not one this storage wrote")
    return decode_record(document["record"])


def _read_events(response: dict[str, Any]) -> list[Event]:
    return [decode_event(payload) for payload in _read_json(response)["events"]]


@attrs.define
class _Head:
    """What this process knows about one session's log (all of it is re-checked by S3)."""

    generation: str
    last_seq: int  # a seq known to end a batch
    segment_end: int  # the end of the segment chain, as far as known
    tail: list[Event]  # every event in (segment_end, last_seq]


@attrs.frozen
class _Segment:
    first: int
    last: int
    key: str


class S3Storage(SessionStorage):
    """Sessions in an S3 bucket; safe for many processes and hosts sharing the bucket."""

    capabilities: ClassVar[StorageCapabilities] = StorageCapabilities(cross_process_fencing=True, durable=True)

    def __init__(
        self, client: S3Client, *, prefix: str = "", segment_events: int = 128, check_conditional_writes: bool = True
    ) -> None:
        """``check_conditional_writes=False`` skips the check that the server enforces
        ``If-None-Match`` and ``If-Match`` (see ``check_server``): unsafe, since on a
        server that ignores them writers overwrite each other's events silently."""
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        if segment_events < 2:
            raise ValueError("segment_events must be at least 2")
        self._s3 = client
        self._prefix = prefix
        self._segment_events = segment_events
        self._heads: dict[str, _Head] = {}
        self._closed = False
        self._checked = not check_conditional_writes
        self._refusal: str | None = None  # why the server cannot be used, once known
        self._check_lock = trio.Lock()

    # -- keys ---------------------------------------------------------------------------

    def _session_prefix(self, enc: str) -> str:
        return f"{self._prefix}sessions/{enc}/"

    def _record_key(self, enc: str) -> str:
        return f"{self._session_prefix(enc)}record.json"

    def _log_prefix(self, enc: str, generation: str) -> str:
        return f"{self._session_prefix(enc)}{generation}/"

    def _batch_key(self, enc: str, generation: str, first: int) -> str:
        return f"{self._log_prefix(enc, generation)}events/{seq_name(first)}.json"

    def _index_keys(self, record: SessionRecord) -> set[str]:
        name = order_key(record.created_at, record.id)
        return {f"{self._prefix}index/{scope}/{name}" for scope in index_scopes(record.agent, dict(record.labels))}

    # -- small operations ----------------------------------------------------------------

    async def _check_open(self) -> None:
        """Closed storage fails fast; an open one checks the server once, before its first request."""
        if self._closed:
            raise StorageError("the S3 storage is closed")
        if not self._checked:
            await self.check_server()

    async def check_server(self) -> None:
        """Check, once, that the server enforces the conditional writes this storage needs.

        Runs by itself before the first operation; a host may await it at start-up to fail
        early. Writes and deletes one probe object under the prefix. Raises ``ConfigError``
        naming what the server ignored (and again on every later call: the storage refuses
        to work), ``StorageError`` when the server could not be asked (the next call asks
        again).
        """
        async with self._check_lock:
            if self._refusal is None and not self._checked:
                try:
                    await probe_conditional_writes(self._s3, probe_key(self._prefix))
                except ConfigError as exc:
                    self._refusal = str(exc)
                else:
                    self._checked = True
        if self._refusal is not None:
            raise ConfigError(self._refusal)

    async def _call(self, operation: str, then: Any = None, **params: Any) -> Any:
        try:
            return await self._s3.call(operation, then, **params)
        except (ClientError, BotoCoreError) as exc:
            raise _failed(operation, exc) from exc

    async def _list_keys(self, prefix: str, start_after: str | None = None) -> list[str]:
        keys: list[str] = []
        params: dict[str, Any] = {"Prefix": prefix}
        if start_after is not None:
            params["StartAfter"] = start_after
        while True:
            response = await self._call("list_objects_v2", **params)
            keys.extend(item["Key"] for item in response.get("Contents", ()))
            if not response.get("IsTruncated"):
                return keys
            params.pop("StartAfter", None)
            params["ContinuationToken"] = response["NextContinuationToken"]

    async def _concurrently(self, jobs: Sequence[Any]) -> list[Any]:
        """Await every job (a zero-argument async callable) concurrently, in order.

        The first failure cancels the rest and is raised as itself, not wrapped in an
        exception group, so callers see the ``StorageError`` they would see in series.
        """
        results: list[Any] = [None] * len(jobs)
        failure: list[Exception] = []

        async def run(index: int, job: Any, cancel_scope: trio.CancelScope) -> None:
            try:
                results[index] = await job()
            except Exception as exc:
                failure.append(exc)
                cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            for index, job in enumerate(jobs):
                nursery.start_soon(run, index, job, nursery.cancel_scope)
        if failure:
            raise failure[0]
        return results

    async def _get_many(self, keys: Sequence[str], then: Any) -> list[Any]:
        """GET every key concurrently (bounded by the client's limiter); ``None`` if missing."""

        async def fetch(key: str) -> Any:
            try:
                return await self._s3.call("get_object", then, Key=key)
            except (ClientError, BotoCoreError) as exc:
                if not is_missing(exc):
                    raise _failed("get_object", exc) from exc
                return None

        return await self._concurrently([functools.partial(fetch, key) for key in keys])

    async def _delete_keys(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": key} for key in keys[start : start + 1000]]
            await self._call("delete_objects", Delete={"Objects": chunk, "Quiet": True})

    async def _put_empty(self, key: str) -> None:
        await self._call("put_object", Key=key, Body=b"")

    async def _get_record(self, enc: str) -> tuple[dict[str, Any], str | None] | None:
        """The stored record document and its ETag (``None`` if the server sent none), or ``None``."""

        def then(response: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
            return _read_json(response), response.get("ETag") or None

        try:
            found: tuple[dict[str, Any], str | None] = await self._s3.call(
                "get_object", then, Key=self._record_key(enc)
            )
            return found
        except (ClientError, BotoCoreError) as exc:
            if is_missing(exc):
                return None
            raise _failed("get_object", exc) from exc

    async def _generation(self, session_id: str, enc: str, incarnation: str | None = None) -> str:
        """The generation of an existing session (one HEAD); ``SessionNotFound`` otherwise.
        With ``incarnation``, ``IncarnationMismatch`` if the stored session is another one."""
        try:
            response = await self._s3.call("head_object", Key=self._record_key(enc))
        except (ClientError, BotoCoreError) as exc:
            if is_missing(exc):
                self._heads.pop(session_id, None)
                raise SessionNotFound(f"session '{session_id}' not found") from None
            raise _failed("head_object", exc) from exc
        metadata = response.get("Metadata", {})
        generation = metadata.get("generation")
        if not generation:
            raise StorageError(f"the record of session '{session_id}' has no generation")
        check_incarnation(session_id, metadata.get("incarnation", ""), incarnation)
        return str(generation)

    def _head(self, session_id: str, generation: str) -> _Head | None:
        head = self._heads.get(session_id)
        return head if head is not None and head.generation == generation else None

    # -- the log --------------------------------------------------------------------------

    async def _segments(self, enc: str, generation: str) -> dict[int, _Segment]:
        """The longest segment starting at each first seq."""
        chain: dict[int, _Segment] = {}
        for key in await self._list_keys(f"{self._log_prefix(enc, generation)}segments/"):
            match = _SEGMENT.search(key)
            if match:
                segment = _Segment(int(match.group(1)), int(match.group(2)), key)
                if segment.first not in chain or chain[segment.first].last < segment.last:
                    chain[segment.first] = segment
        return chain

    async def _batches_after(self, enc: str, generation: str, seq: int) -> list[tuple[int, str]]:
        """``(first seq, key)`` of every batch starting after ``seq``, in order."""
        keys = await self._list_keys(
            f"{self._log_prefix(enc, generation)}events/", start_after=self._batch_key(enc, generation, seq)
        )
        return [(int(m.group(1)), key) for key in keys if (m := _BATCH.search(key))]

    async def _catch_up(self, session_id: str, enc: str, generation: str) -> _Head:
        """Bring this process's view of the log up to what S3 has now.

        Lists the batches after the last known batch end and fetches them, so the tail
        stays known and compaction can go on; a cold view starts at the segment chain's
        end. Cost: one LIST plus one GET per batch other writers added.
        """
        head = self._head(session_id, generation)
        if head is None:
            chain = await self._segments(enc, generation)
            end = 0
            while end + 1 in chain:
                end = chain[end + 1].last
            head = _Head(generation, end, end, [])
            self._heads[session_id] = head
        base = head.last_seq
        batches = await self._batches_after(enc, generation, base)
        if not batches:
            return head
        parts = await self._get_many([key for _, key in batches], _read_events)
        events: list[Event] = []
        for part in parts:
            if part is None:
                raise StorageError(f"an object of session '{session_id}' vanished while it was read")
            events.extend(part)
        if [e.seq for e in events] != list(range(base + 1, base + 1 + len(events))):
            raise StorageError(f"the log of session '{session_id}' is not contiguous after seq {base}")
        if self._heads.get(session_id) is head and head.last_seq == base:  # nobody advanced it meanwhile
            head.last_seq = events[-1].seq
            head.tail.extend(events)
        return head

    async def _written_by(self, key: str, token: str) -> bool:
        """Whether the object at ``key`` was written by the attempt holding ``token``.

        A conditional PUT whose response was lost and which was retried meets its own
        object and fails with 412: that is a success, not a conflict.
        """
        try:
            response = await self._s3.call("head_object", Key=key)
        except (ClientError, BotoCoreError):
            return False
        return bool(response.get("Metadata", {}).get("writer") == token)

    async def _compact(self, session_id: str, enc: str, head: _Head) -> None:
        """Copy the known tail into one segment object so reads need few GETs.

        Best effort: the batches stay (they are the fence), a failure only delays it.
        """
        tail = head.tail
        if head.last_seq - head.segment_end < self._segment_events:
            return
        first, last = head.segment_end + 1, head.last_seq
        key = f"{self._log_prefix(enc, head.generation)}segments/{seq_name(first)}-{seq_name(last)}.json"
        body = json_bytes({"first": first, "last": last, "events": [encode_event(e) for e in tail]})
        try:
            await self._s3.call("put_object", Key=key, Body=body, IfNoneMatch="*", ContentType="application/json")
        except (ClientError, BotoCoreError) as exc:
            if not is_precondition_failed(exc):  # 412: another writer made the same segment
                return
        if self._heads.get(session_id) is head and head.last_seq == last:
            head.segment_end, head.tail = last, []

    async def _replace_record(self, record: SessionRecord, enc: str, generation: str, body: bytes, etag: str) -> None:
        """Write ``body`` over the record object if its ETag is still ``etag``.

        On a 412 the record is read again. Ours (a retried write whose answer was lost):
        done. Unchanged, same ETag: the server compared ``If-Match`` with a differently
        quoted ETag (Ceph RGW 16 wants it unquoted), so the write is tried once more with
        the ETag unquoted. Anything else is a ``Conflict``, logged at warning, since a
        record that is never saved leaves listings stale without anyone noticing.
        """
        ours = loads(body)["record"]
        candidates = [etag]
        if etag.strip('"') != etag:
            candidates.append(etag.strip('"'))
        for tag in candidates:
            try:
                await self._s3.call(
                    "put_object", Key=self._record_key(enc), Body=body, IfMatch=tag,
                    Metadata={"generation": generation, "incarnation": record.incarnation},
                    ContentType="application/json",
                )
                return
            except (ClientError, BotoCoreError) as exc:
                if is_missing(exc):
                    raise SessionNotFound(f"session '{record.id}' not found") from None
                if not is_precondition_failed(exc):
                    raise _failed("put_object", exc) from exc
            now = await self._get_record(enc)
            if now is None:
                raise SessionNotFound(f"session '{record.id}' not found")
            if now[0].get("record") == ours:
                return  # our own write, retried after a lost response
            if now[1] != etag:
                raise self._save_refused(record, "another writer saved the record first")
        raise self._save_refused(record, "the server refused If-Match although the record was unchanged")

    def _save_refused(self, record: SessionRecord, reason: str) -> Conflict:
        _log.warning(
            "S3 record save of session %r gave up: %s", record.id, reason,
            extra={"session_id": record.id, "revision": record.revision},
        )
        return Conflict(f"session '{record.id}' was not saved: {reason}")

    # -- the contract -------------------------------------------------------------------

    async def create(self, record: SessionRecord) -> None:
        await self._check_open()
        enc = encode_id(record.id)
        generation = secrets.token_hex(8)
        entries = self._index_keys(record)
        # Index entries first: a crash before the record leaves entries that listing skips.
        await self._concurrently([functools.partial(self._put_empty, key) for key in sorted(entries)])
        body = json_bytes({"generation": generation, "record": encode_record(record)})
        try:
            await self._s3.call(
                "put_object", Key=self._record_key(enc), Body=body, IfNoneMatch="*",
                Metadata={"generation": generation, "incarnation": record.incarnation}, ContentType="application/json",
            )
        except (ClientError, BotoCoreError) as exc:
            if not is_precondition_failed(exc):
                raise _failed("put_object", exc) from exc
            existing = await self._get_record(enc)
            if existing is not None and existing[0].get("generation") == generation:
                pass  # our own write, retried after a lost response
            else:
                keep = self._index_keys(_record_of(existing[0])) if existing else set()
                await self._delete_keys(sorted(entries - keep))
                raise SessionExists(f"session '{record.id}' already exists") from None
        self._heads[record.id] = _Head(generation, 0, 0, [])

    async def load(self, session_id: str) -> SessionRecord | None:
        await self._check_open()
        found = await self._get_record(encode_id(session_id))
        if found is None:
            return None
        return _record_of(found[0])

    async def save(self, record: SessionRecord, expected_revision: int) -> None:
        await self._check_open()
        if record.revision != expected_revision + 1:
            raise ValueError("record.revision must be expected_revision + 1")
        enc = encode_id(record.id)
        found = await self._get_record(enc)
        if found is None:
            raise SessionNotFound(f"session '{record.id}' not found")
        document, etag = found
        if etag is None:
            raise StorageError(f"the S3 server returned no ETag for the record of session '{record.id}'")
        stored = _record_of(document)
        check_incarnation(record.id, stored.incarnation, record.incarnation)
        if stored.revision != expected_revision:
            raise self._save_refused(record, f"the stored record is at revision {stored.revision}, not {expected_revision}")
        old_entries, new_entries = self._index_keys(stored), self._index_keys(record)
        for key in sorted(new_entries - old_entries):
            await self._put_empty(key)
        generation = document["generation"]
        body = json_bytes({"generation": generation, "record": encode_record(record)})
        await self._replace_record(record, enc, generation, body, etag)
        if old_entries - new_entries:
            await self._delete_keys(sorted(old_entries - new_entries))

    async def append(
        self, session_id: str, events: Sequence[Event], expected_seq: int, *, incarnation: str | None = None
    ) -> None:
        await self._check_open()
        events = list(events)
        check_batch(events, expected_seq)
        enc = encode_id(session_id)
        # The incarnation is checked on the record's HEAD, just before the write: a delete
        # and create in between is caught by the next save (the record's compare-and-swap).
        generation = await self._generation(session_id, enc, incarnation)
        head = self._head(session_id, generation)
        if head is None or head.last_seq != expected_seq:
            # A known batch end beyond expected_seq already proves the log moved on.
            if head is None or head.last_seq < expected_seq:
                head = await self._catch_up(session_id, enc, generation)
            if head.last_seq != expected_seq:
                raise Conflict(f"session '{session_id}' is at seq {head.last_seq}, not {expected_seq}")
        if not events:
            return
        last = events[-1].seq
        key = self._batch_key(enc, generation, expected_seq + 1)
        token = secrets.token_hex(8)
        body = json_bytes({"first": expected_seq + 1, "last": last, "events": [encode_event(e) for e in events]})
        try:
            await self._s3.call(
                "put_object", Key=key, Body=body, IfNoneMatch="*",
                Metadata={"last": str(last), "writer": token}, ContentType="application/json",
            )
        except (ClientError, BotoCoreError) as exc:
            if not is_precondition_failed(exc):
                raise _failed("put_object", exc) from exc
            retried = getattr(exc, "attempts", 1) > 1
            if not (retried and await self._written_by(key, token)):
                raise Conflict(f"session '{session_id}' was appended to by another writer") from None
        head = self._head(session_id, generation)
        if head is not None and head.last_seq == expected_seq:
            head.last_seq = last
            head.tail.extend(events)
            await self._compact(session_id, enc, head)

    async def read(self, session_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        await self._check_open()
        enc = encode_id(session_id)
        generation = await self._generation(session_id, enc)
        after_seq = max(after_seq, 0)
        if limit is not None and limit <= 0:
            return []
        chain = await self._segments(enc, generation)
        chosen: list[str] = []
        base = 0
        while base + 1 in chain:
            segment = chain[base + 1]
            if segment.last > after_seq:
                chosen.append(segment.key)
            base = segment.last
            if limit is not None and base - after_seq >= limit:
                break
        batches: list[tuple[int, str]] = []
        if limit is None or base - after_seq < limit:
            batches = await self._batches_after(enc, generation, base)
            # Skip whole batches before the one holding after_seq + 1, and beyond the limit.
            holding = max((i for i, (first, _) in enumerate(batches) if first <= after_seq + 1), default=0)
            batches = [b for b in batches[holding:] if limit is None or b[0] <= after_seq + limit]
        parts = await self._get_many([*chosen, *(key for _, key in batches)], _read_events)
        events: list[Event] = []
        for part in parts:
            if part is None:
                raise StorageError(f"an object of session '{session_id}' vanished while it was read")
            for event in part:
                if event.seq > after_seq and (not events or event.seq > events[-1].seq):
                    if event.seq != (events[-1].seq if events else after_seq) + 1:
                        raise StorageError(f"the log of session '{session_id}' has a gap before seq {event.seq}")
                    events.append(event)
        if limit is not None:
            return events[:limit]
        if after_seq <= base:
            # A read to the end from within the chain: this process now knows the whole tail.
            last = events[-1].seq if events else max(base, after_seq)
            self._heads[session_id] = _Head(generation, last, base, [e for e in events if e.seq > base])
        return events

    async def last_seq(self, session_id: str) -> int:
        await self._check_open()
        enc = encode_id(session_id)
        generation = await self._generation(session_id, enc)
        return (await self._catch_up(session_id, enc, generation)).last_seq

    async def list(
        self, filter: SessionFilter, limit: int = 50, cursor: str | None = None, *, order: ListOrder = "created"
    ) -> Page:
        await self._check_open()
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if order != "created":
            return await self._list_by_update(filter, limit, cursor, order)
        if cursor is not None and (not isinstance(cursor, str) or parse_order_key(cursor) is None):
            raise ValueError(f"invalid cursor {cursor!r:.80}: pass back a next_cursor from this storage")
        prefix = f"{self._prefix}index/{listing_scope(filter)}/"
        params: dict[str, Any] = {"Prefix": prefix, "MaxKeys": min(1000, 2 * (limit + 1))}
        if cursor is not None:
            params["StartAfter"] = prefix + cursor
        found: list[tuple[str, SessionRecord]] = []
        while len(found) <= limit:
            response = await self._call("list_objects_v2", **params)
            names = [item["Key"][len(prefix) :] for item in response.get("Contents", ())]
            candidates = [(name, parsed[1]) for name in names if (parsed := parse_order_key(name))]
            documents = await self._get_many([self._record_key(encode_id(sid)) for _, sid in candidates], _read_json)
            for (name, session_id), document in zip(candidates, documents, strict=True):
                if document is None:
                    continue  # an entry left by a crashed create or delete
                record = _record_of(document)
                if record.id != session_id or order_key(record.created_at, record.id) != name:
                    continue
                if filter.matches(record):
                    found.append((name, record))
                    if len(found) > limit:
                        break
            if not response.get("IsTruncated"):
                break
            params.pop("StartAfter", None)
            params["ContinuationToken"] = response["NextContinuationToken"]
        page = found[:limit]
        return Page(tuple(r for _, r in page), page[-1][0] if len(found) > limit else None)

    async def _list_by_update(self, filter: SessionFilter, limit: int, cursor: str | None, order: ListOrder) -> Page:
        # The index is kept in creation order only: every record of the partition is read.
        if cursor is not None:
            decode_cursor(cursor, order)  # a bad cursor fails before any request
        prefix = f"{self._prefix}index/{listing_scope(filter)}/"
        names = [key[len(prefix) :] for key in await self._list_keys(prefix)]
        candidates = [(name, parsed[1]) for name in names if (parsed := parse_order_key(name))]
        documents = await self._get_many([self._record_key(encode_id(sid)) for _, sid in candidates], _read_json)
        records = []
        for (name, session_id), document in zip(candidates, documents, strict=True):
            if document is None:
                continue  # an entry left by a crashed create or delete
            record = _record_of(document)
            if record.id == session_id and order_key(record.created_at, record.id) == name:
                records.append(record)
        return page_in_order(records, filter, limit, cursor, order)

    async def delete(self, session_id: str) -> bool:
        await self._check_open()
        enc = encode_id(session_id)
        found = await self._get_record(enc)
        self._heads.pop(session_id, None)
        if found is not None:
            # Deleting the record is the commit point: from here the session does not exist.
            await self._call("delete_object", Key=self._record_key(enc))
            await self._delete_keys(sorted(self._index_keys(_record_of(found[0]))))
        # Sweep the logs, sparing a generation created meanwhile by another host.
        keys = await self._list_keys(self._session_prefix(enc))
        now = await self._get_record(enc)
        spare = self._log_prefix(enc, now[0]["generation"]) if now is not None else None
        record_key = self._record_key(enc)
        doomed = [k for k in keys if k != record_key and not (spare and k.startswith(spare))]
        await self._delete_keys(doomed)
        return found is not None

    async def aclose(self) -> None:
        self._closed = True
        await self._s3.aclose()
