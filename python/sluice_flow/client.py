"""FlowClient: sends tasks to a sluice flow server over its Unix socket (docs/flow-protocol.md).

    async with FlowClient("/tmp/sluice-flow.sock") as client:
        results = await client.process([Task({"text": "hi"}), {"text": "plain JSON works too"}])
        if results[0].ok:
            use(results[0].data)

One `process` call is one request frame. The client keeps at most `pool_size` connections, opened
lazily, and many requests in flight on each (pipelining); one reader task per connection matches
answers to callers by request id. Nothing is ever retried: a request whose connection breaks ends
as UNAVAILABLE, because its tasks may already have run (at most once).

Concurrency: a FlowClient belongs to the event loop that first uses it; call it from that loop
only (one client per process or per web worker). Any number of coroutines may call `process` at
once.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any, Sequence

from . import protocol
from .protocol import (
    FAILED,
    HEADER,
    HEADER_SIZE,
    KIND_ERROR,
    KIND_RESPONSE,
    MAGIC,
    TIMED_OUT,
    UNAVAILABLE,
    ProtocolError,
    Result,
)

# Bytes the stream reader buffers before it stops reading the socket: large enough that a busy
# connection is not paused and resumed for every few answers.
_READ_BUFFER_LIMIT = 4 * 1024 * 1024


def _same(count: int, status: str, message: str) -> list[Result]:
    return [Result(status, None, b"", message) for _ in range(count)]


class _Connection:
    """One pooled connection: its pending requests, the frames waiting to go out, and the reader
    task that answers them.

    States: connecting (frames queue in `_backlog`); open (frames queue in `_outbox` and go out
    together at the end of the event loop's iteration: one write, one system call, for all the
    requests submitted in it); closed (`closed` is True and every pending request has been answered
    UNAVAILABLE). A closed connection never opens again; the pool replaces it.
    """

    __slots__ = ("_path", "_connect_timeout", "_pending", "_backlog", "_outbox", "_writer",
                 "_loop", "_task", "closed")

    def __init__(self, path: str, connect_timeout: float) -> None:
        self._path = path
        self._connect_timeout = connect_timeout
        # request id -> (future, task count); each future gets a list of Results, exactly once.
        self._pending: dict[int, tuple[asyncio.Future, int]] = {}
        self._backlog: list[tuple[int, bytes]] | None = []  # None once connected
        self._outbox: list[bytes] = []  # frames to write at the end of this loop iteration
        self._writer: asyncio.StreamWriter | None = None
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run())

    @property
    def load(self) -> int:
        """Requests sent on this connection (or waiting for its connect) and not answered yet."""
        return len(self._pending)

    def submit(self, request_id: int, frame: bytes, count: int, future: asyncio.Future) -> None:
        """Sends `frame` (or queues it until the connection is open); `future` gets its results."""
        if self.closed:  # the pool only picks live connections; kept for safety
            future.set_result(_same(count, UNAVAILABLE, f"{self._path}: connection closed"))
            return
        self._pending[request_id] = (future, count)
        if self._backlog is not None:
            self._backlog.append((request_id, frame))
            return
        if not self._outbox:
            self._loop.call_soon(self._flush)
        self._outbox.append(frame)

    def _flush(self) -> None:
        frames, self._outbox = self._outbox, []
        if self.closed or not frames:
            return
        try:
            self._writer.write(frames[0] if len(frames) == 1 else b"".join(frames))
        except Exception as error:  # the transport is closing: the reader reports why
            self._fail_all(f"write: {_reason(error)}")

    def forget(self, request_id: int) -> None:
        """The caller stopped waiting (its timeout, or it was cancelled): a late answer is dropped,
        and a frame still waiting for the connect never goes out."""
        self._pending.pop(request_id, None)

    async def close(self) -> None:
        """Closes the socket and answers what is pending UNAVAILABLE ("client closed")."""
        self._fail_all("client closed")
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, Exception):
            pass

    async def _run(self) -> None:
        reason = "connection closed"
        try:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_unix_connection(self._path, limit=_READ_BUFFER_LIMIT),
                    self._connect_timeout)
            except asyncio.TimeoutError:
                reason = f"connect: timed out after {self._connect_timeout:g} s"
                return
            except OSError as error:
                reason = f"connect: {_reason(error)}"
                return
            self._writer = writer
            if self.closed:  # closed while connecting
                return
            backlog, self._backlog = self._backlog, None
            frames = [frame for request_id, frame in backlog if request_id in self._pending]
            if frames:
                writer.write(b"".join(frames))
            reason = await self._read_loop(reader)
        except asyncio.CancelledError:
            reason = "client closed"
            raise
        except Exception as error:  # a bug here must not leave callers waiting
            reason = f"client error: {error!r}"
        finally:
            self._fail_all(reason)

    async def _read_loop(self, reader: asyncio.StreamReader) -> str:
        """Answers pending requests until the connection ends; returns why it ended."""
        readexactly = reader.readexactly
        unpack_header = HEADER.unpack
        pending = self._pending
        while True:
            try:
                header = await readexactly(HEADER_SIZE)
                magic, kind, request_id, count, body_length = unpack_header(header)
                if magic != MAGIC:
                    return f"protocol error: bad magic {magic!r} from the server"
                body = await readexactly(body_length) if body_length else b""
            except asyncio.IncompleteReadError as error:
                if error.partial or pending:
                    return "connection closed by the server"
                return "connection closed by the server (idle)"
            except OSError as error:
                return f"read: {_reason(error)}"

            if kind == KIND_RESPONSE:
                entry = pending.pop(request_id, None)
                if entry is None:
                    continue  # the caller timed out or gave up: the late answer is discarded
                future, expected = entry
                if count != expected:
                    pending[request_id] = entry
                    return (f"protocol error: {count} results for request {request_id} "
                            f"of {expected} tasks")
                try:
                    results = protocol.decode_results(body, count)
                except ProtocolError as error:
                    pending[request_id] = entry
                    return f"protocol error: {error}"
                if not future.done():
                    future.set_result(results)
            elif kind == KIND_ERROR:
                message = body.decode("utf-8", "replace")
                if request_id == 0:
                    # About the connection; the server closes it after this frame.
                    return f"server error: {message}"
                entry = pending.pop(request_id, None)
                if entry is not None and not entry[0].done():
                    entry[0].set_result(_same(entry[1], FAILED, message))
            else:
                return f"protocol error: unknown frame kind {kind} from the server"

    def _fail_all(self, reason: str) -> None:
        """Marks the connection closed and answers every pending request UNAVAILABLE."""
        self.closed = True
        message = f"{self._path}: {reason}"
        entries = list(self._pending.values())
        self._pending.clear()
        self._backlog = None
        self._outbox = []
        for future, count in entries:
            if not future.done():
                future.set_result(_same(count, UNAVAILABLE, message))
        if self._writer is not None:
            self._writer.close()


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno is not None:
        return os.strerror(error.errno)
    return str(error) or error.__class__.__name__


class FlowClient:
    """A pool of connections to one flow server.

    `socket_path`: the server's Unix socket. `pool_size`: the most connections it opens; they
    open lazily, a new one only when every open one already has requests in flight.
    `connect_timeout`: seconds one connect may take. `max_frame_bytes`: the largest request body it
    sends (the server's `--max-frame-bytes`; a larger request would make the server drop the whole
    connection, so the client answers it FAILED without sending it).

    `process` never raises for anything the server or the socket does: every outcome is a status
    (see `Result`). It raises only for the caller's own mistakes (data that is not JSON-able,
    more than 65,536 tasks in one call, a timeout that is not positive).
    """

    def __init__(self, socket_path: str | os.PathLike, pool_size: int = 4,
                 connect_timeout: float = 1.0,
                 max_frame_bytes: int = protocol.DEFAULT_MAX_FRAME_BYTES) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if connect_timeout <= 0:
            raise ValueError("connect_timeout must be positive")
        self.socket_path = os.fspath(socket_path)
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.max_frame_bytes = max_frame_bytes
        self._slots: list[_Connection | None] = [None] * pool_size
        self._ids = itertools.count(1)  # 0 means "the connection" in error frames
        self._closed = False

    async def __aenter__(self) -> "FlowClient":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    @property
    def connections(self) -> int:
        """Connections open or opening now (at most `pool_size`)."""
        return sum(1 for slot in self._slots if slot is not None and not slot.closed)

    async def close(self) -> None:
        """Closes every connection. Requests still in flight end as UNAVAILABLE; later calls to
        `process` answer UNAVAILABLE ("client closed") at once. Safe to call twice."""
        self._closed = True
        slots, self._slots = self._slots, [None] * self.pool_size
        await asyncio.gather(*(slot.close() for slot in slots if slot is not None))

    async def process(self, tasks: Sequence[Any], timeout: float | None = 5.0) -> list[Result]:
        """Sends `tasks` as one request and returns one `Result` per task, in the same order.

        Each task is a `Task(data, bytes)` or a plain JSON-able value. `timeout` (seconds) bounds
        the whole call, connect included, and is also each task's timeout in the server's queues.
        When it passes, the tasks not answered yet end as TIMED_OUT here and a late answer is
        discarded. `timeout=None` waits for the server (which applies its default task timeout)
        or for the connection to break.
        """
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive (or None)")
        if len(tasks) > protocol.MAX_TASKS_PER_REQUEST:
            raise ValueError(f"{len(tasks)} tasks in one call; the most is "
                             f"{protocol.MAX_TASKS_PER_REQUEST}")
        request_id = next(self._ids)
        frame, count = protocol.encode_request(request_id, tasks, protocol.timeout_ms(timeout))
        if count == 0:
            return []
        if self._closed:
            return _same(count, UNAVAILABLE, f"{self.socket_path}: client closed")
        if len(frame) - HEADER_SIZE > self.max_frame_bytes:
            return _same(count, FAILED, f"request of {len(frame) - HEADER_SIZE} bytes is over "
                                        f"the server's limit of {self.max_frame_bytes} bytes")

        connection = self._pick()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        connection.submit(request_id, frame, count, future)
        if future.done():
            return future.result()
        timer = None
        if timeout is not None:
            timer = loop.call_later(timeout, _expire, future, count, timeout)
        try:
            return await future
        finally:
            if timer is not None:
                timer.cancel()
            connection.forget(request_id)  # answered: a no-op; timed out or cancelled: drop it

    def _pick(self) -> _Connection:
        """The least loaded live connection, or a new one when all are busy and a slot is free."""
        best = None
        free = -1
        for index, slot in enumerate(self._slots):
            if slot is None or slot.closed:
                if free < 0:
                    free = index
            elif best is None or slot.load < best.load:
                best = slot
                if slot.load == 0:
                    break
        if best is not None and (best.load == 0 or free < 0):
            return best
        connection = _Connection(self.socket_path, self.connect_timeout)
        self._slots[free] = connection
        return connection


def _expire(future: asyncio.Future, count: int, timeout: float) -> None:
    if not future.done():
        future.set_result(_same(count, TIMED_OUT, f"no answer within {timeout:g} s"))
