"""The flow server's wire protocol (docs/flow-protocol.md), as pure functions over bytes.

Nothing here does I/O: `encode_request` builds one request frame, `decode_results` turns a
response body into `Result`s. The client (client.py) and the tests' fake server share these, so the
byte layout is written down once. Every integer on the wire is little-endian and unsigned.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Iterable

MAGIC = b"SLF1"
KIND_REQUEST = 1
KIND_RESPONSE = 2
KIND_ERROR = 3

# magic, kind, request id, count, body length
HEADER = struct.Struct("<4sIQII")
# request task: timeout ms, data length, bytes length; response result: status, data length,
# bytes length. Same layout, different meaning of the first field.
ITEM = struct.Struct("<III")

HEADER_SIZE = HEADER.size  # 24
ITEM_SIZE = ITEM.size  # 12

#: The server refuses requests with more tasks than this.
MAX_TASKS_PER_REQUEST = 65536
#: The server's default body limit (`--max-frame-bytes`).
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
_U32_MAX = 0xFFFFFFFF

COMPLETED = "COMPLETED"
FAILED = "FAILED"
TIMED_OUT = "TIMED_OUT"
REJECTED = "REJECTED"
STOPPED = "STOPPED"
#: Never on the wire: the client could not reach the server, or lost the connection.
UNAVAILABLE = "UNAVAILABLE"

#: Wire status code -> status name. UNAVAILABLE has no code: only a client produces it.
STATUS_NAMES = {1: COMPLETED, 2: FAILED, 3: TIMED_OUT, 4: REJECTED, 5: STOPPED}
#: Status name -> wire status code (for servers, such as the tests' fake one).
STATUS_CODES = {name: code for code, name in STATUS_NAMES.items()}

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_loads = json.loads


@dataclass(slots=True)
class Task:
    """One task to send through the flow.

    `data` is any JSON-able value (None goes as an empty payload, which the server reads as
    null); `bytes` is carried beside it as it is (bytes, bytearray or memoryview), for example a
    tensor.
    """

    data: Any = None
    bytes: Any = b""


@dataclass(slots=True)
class Result:
    """How one task's trip through the flow ended.

    `status` is one of COMPLETED, FAILED, TIMED_OUT, REJECTED, STOPPED, UNAVAILABLE.
    COMPLETED: `data` is the task's final data (decoded JSON) and `bytes` its final bytes, `error`
    is "". Any other status: `data` is None, `bytes` is b"", and `error` says why.
    """

    status: str
    data: Any = None
    bytes: bytes = b""
    error: str = ""

    @property
    def ok(self) -> bool:
        """True when the task completed."""
        return self.status == COMPLETED


class ProtocolError(Exception):
    """The peer sent bytes that do not follow the protocol; the connection cannot go on."""


def timeout_ms(timeout: float | None) -> int:
    """The request's per-task `timeout ms` for a call bounded by `timeout` seconds.

    None means 0, the server's default. Rounds up so that a short timeout never becomes 0 and
    saturates at the field's maximum.
    """
    if timeout is None:
        return 0
    ms = int(timeout * 1000.0)
    if ms < timeout * 1000.0:
        ms += 1
    return min(max(ms, 1), _U32_MAX)


def encode_request(request_id: int, tasks: Iterable[Any],
                   task_timeout_ms: int) -> tuple[bytes, int]:
    """One request frame carrying `tasks`; returns (frame, number of tasks).

    Each task is a `Task` or, for convenience, a plain JSON-able value (sent as `data` with empty
    `bytes`). Raises TypeError or ValueError (from json) for data that is not JSON-able, NaN and
    infinities included, before anything is sent.
    """
    pack_item = ITEM.pack
    parts = [b""]  # the header, filled in once the body's length is known
    append = parts.append
    body_length = 0
    count = 0
    for task in tasks:
        if isinstance(task, Task):
            data, raw = task.data, task.bytes
        else:
            data, raw = task, b""
        encoded = b"" if data is None else _dumps(data).encode()
        raw_length = len(raw) if raw.__class__ is not memoryview else raw.nbytes
        append(pack_item(task_timeout_ms, len(encoded), raw_length))
        append(encoded)
        if raw_length:
            append(raw)
        body_length += ITEM_SIZE + len(encoded) + raw_length
        count += 1
    parts[0] = HEADER.pack(MAGIC, KIND_REQUEST, request_id, count, body_length)
    return b"".join(parts), count


def encode_frame(kind: int, request_id: int, count: int, body: bytes) -> bytes:
    """Any frame from its parts (responses and error frames, for servers and tests)."""
    return HEADER.pack(MAGIC, kind, request_id, count, len(body)) + body


def encode_results(request_id: int, results: Iterable[tuple[str, bytes, bytes]]) -> bytes:
    """A response frame from (status name, data or message bytes, bytes) triples."""
    parts = [b""]
    count = 0
    for status, data, raw in results:
        parts.append(ITEM.pack(STATUS_CODES[status], len(data), len(raw)))
        parts.append(data)
        parts.append(raw)
        count += 1
    body = b"".join(parts)
    return HEADER.pack(MAGIC, KIND_RESPONSE, request_id, count, len(body)) + body


def decode_tasks(body: bytes, count: int) -> list[tuple[int, bytes, bytes]]:
    """A request body as (timeout ms, data bytes, bytes) triples. Raises ProtocolError."""
    return _split(body, count, "request")


def decode_results(body: bytes, count: int) -> list[Result]:
    """A response body as `Result`s, in the order of the request's tasks.

    Raises ProtocolError when the body does not hold exactly `count` well-formed results. A
    COMPLETED result whose data is not valid JSON becomes FAILED (that task alone), and an unknown
    status code becomes FAILED with the code in the message.
    """
    results = []
    append = results.append
    for code, data, raw in _split(body, count, "response"):
        status = STATUS_NAMES.get(code)
        if status == COMPLETED:
            try:
                value = _loads(data) if data else None
            except ValueError as error:  # json.JSONDecodeError, UnicodeDecodeError
                append(Result(FAILED, None, b"", f"the server's answer is not valid JSON: {error}"))
                continue
            append(Result(COMPLETED, value, raw, ""))
        else:
            message = data.decode("utf-8", "replace")
            if status is None:
                status, message = FAILED, f"unknown status {code} from the server: {message}"
            append(Result(status, None, b"", message))
    return results


def _split(body: bytes, count: int, what: str) -> list[tuple[int, bytes, bytes]]:
    unpack_item = ITEM.unpack_from
    items = []
    position = 0
    end = len(body)
    for index in range(count):
        if position + ITEM_SIZE > end:
            raise ProtocolError(f"{what} body ends inside item {index} of {count}")
        first, data_length, raw_length = unpack_item(body, position)
        position += ITEM_SIZE
        data_end = position + data_length
        raw_end = data_end + raw_length
        if raw_end > end:
            raise ProtocolError(f"{what} body ends inside item {index} of {count}")
        items.append((first, body[position:data_end], body[data_end:raw_end]))
        position = raw_end
    if position != end:
        raise ProtocolError(f"{what} body has {end - position} bytes after its {count} items")
    return items
