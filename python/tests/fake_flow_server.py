#!/usr/bin/python3
"""A fake flow server speaking docs/flow-protocol.md, for testing clients without the C++ binary.

It echoes each task's data and bytes back as COMPLETED. A task whose data is a JSON object may
steer it with these keys (the first one present in the request wins where it says "request"):

    "delay": S             answer the whole request S seconds later (so answers come out of order)
    "fail": MESSAGE        this task ends FAILED with MESSAGE
    "status": NAME         this task ends with status NAME (TIMED_OUT, REJECTED, STOPPED) and the
                           message in "message"
    "bad_json": true       this task's answer is COMPLETED with data that is not JSON
    "error_frame": MESSAGE request: answer with an error frame for this request id
    "connection_error": M  request: send an error frame with request id 0, then close
    "close": true          request: write the first half of the response, then close the connection

Run as a script (`fake_flow_server.py --socket PATH`) it serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from sluice_flow import protocol  # noqa: E402
from sluice_flow.protocol import (  # noqa: E402
    HEADER,
    HEADER_SIZE,
    KIND_ERROR,
    KIND_REQUEST,
    MAGIC,
)


class FakeFlowServer:
    """An asyncio Unix-socket server; `start()`/`stop()` may be called again to restart it.

    Counters for the tests: `connections` (accepted in all), `open_connections`,
    `max_open_connections`, `max_inflight_per_connection` (requests read but not answered on one
    connection), `requests`, `tasks`, `timeouts_ms` (every task's timeout field, in order seen).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._answers: set[asyncio.Task] = set()
        self.connections = 0
        self.open_connections = 0
        self.max_open_connections = 0
        self.max_inflight_per_connection = 0
        self.requests = 0
        self.tasks = 0
        self.timeouts_ms: list[int] = []

    async def start(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._serve, self.path)

    async def stop(self) -> None:
        """Stops listening, drops every connection (as if the server died), unlinks the socket."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._answers):
            task.cancel()
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        if os.path.exists(self.path):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_connections += 1
        self.max_open_connections = max(self.max_open_connections, self.open_connections)
        self._writers.add(writer)
        inflight = [0]
        try:
            while True:
                header = await reader.readexactly(HEADER_SIZE)
                magic, kind, request_id, count, body_length = HEADER.unpack(header)
                body = await reader.readexactly(body_length)
                if magic != MAGIC or kind != KIND_REQUEST:
                    writer.write(protocol.encode_frame(KIND_ERROR, 0, 0, b"bad frame"))
                    return
                tasks = protocol.decode_tasks(body, count)
                self.requests += 1
                self.tasks += count
                self.timeouts_ms.extend(timeout for timeout, _, _ in tasks)
                inflight[0] += 1
                self.max_inflight_per_connection = max(self.max_inflight_per_connection,
                                                       inflight[0])
                answer = asyncio.get_running_loop().create_task(
                    self._answer(writer, request_id, tasks, inflight))
                self._answers.add(answer)
                answer.add_done_callback(self._answers.discard)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.open_connections -= 1
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, writer, request_id, tasks, inflight) -> None:
        controls = {}
        decoded = []
        for _, data, raw in tasks:
            value = json.loads(data) if data else None
            decoded.append((value, data, raw))
            if isinstance(value, dict):
                for key in ("delay", "error_frame", "connection_error", "close"):
                    if key in value and key not in controls:
                        controls[key] = value[key]
        try:
            if "delay" in controls:
                await asyncio.sleep(controls["delay"])
            if writer.is_closing():
                return
            if "error_frame" in controls:
                writer.write(protocol.encode_frame(KIND_ERROR, request_id, 0,
                                                   controls["error_frame"].encode()))
                return
            if "connection_error" in controls:
                writer.write(protocol.encode_frame(KIND_ERROR, 0, 0,
                                                   controls["connection_error"].encode()))
                writer.close()
                return
            results = []
            for value, data, raw in decoded:
                if isinstance(value, dict) and "fail" in value:
                    results.append(("FAILED", value["fail"].encode(), b""))
                elif isinstance(value, dict) and "status" in value:
                    results.append((value["status"], value.get("message", "").encode(), b""))
                elif isinstance(value, dict) and value.get("bad_json"):
                    results.append(("COMPLETED", b"{not json", b""))
                else:
                    results.append(("COMPLETED", data, raw))
            frame = protocol.encode_results(request_id, results)
            if "close" in controls:
                writer.write(frame[: len(frame) // 2])
                writer.close()
                return
            writer.write(frame)
        finally:
            inflight[0] -= 1


async def _main(path: str) -> None:
    server = FakeFlowServer(path)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"fake flow server on {path}", flush=True)
    await stop.wait()
    await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True)
    asyncio.run(_main(parser.parse_args().socket))
