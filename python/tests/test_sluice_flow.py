"""Tests of sluice_flow (the flow server's Python client) and of the examples that use it.

Run: /usr/bin/python3 -m unittest discover -s python/tests -v   (ctest runs exactly this)

Most tests talk to FakeFlowServer (fake_flow_server.py), in the same event loop, so they need no
C++ build. With SLUICE_FLOW_SERVER naming the real flow_server binary, RealFlowServerTest runs the
client and examples/flow_client.py against it. The FastAPI test runs when Debian's
python3-fastapi, python3-uvicorn and gunicorn are importable. Every test runs under a watchdog.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(TESTS_DIR))
sys.path.insert(0, os.path.join(REPO, "python"))
sys.path.insert(0, TESTS_DIR)

from fake_flow_server import FakeFlowServer  # noqa: E402
from sluice_flow import FlowClient, Result, Task  # noqa: E402
from sluice_flow import protocol  # noqa: E402

# Debian's interpreter: the one that sees python3-fastapi & co. (not a python3 earlier on PATH).
PYTHON = "/usr/bin/python3"
FLOW_CLIENT = os.path.join(REPO, "examples", "flow_client.py")
FAKE_SERVER = os.path.join(TESTS_DIR, "fake_flow_server.py")
GUNICORN_CONF = os.path.join(REPO, "examples", "flow_fastapi", "gunicorn.conf.py")
WATCHDOG_SECONDS = 20


def _watchdog(test, seconds):
    @functools.wraps(test)
    async def guarded(self):
        await asyncio.wait_for(test(self), seconds)
    return guarded


class AsyncTest(unittest.IsolatedAsyncioTestCase):
    """Every async test_* method runs under asyncio.wait_for(WATCHDOG_SECONDS): a hang fails."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name, member in list(vars(cls).items()):
            if name.startswith("test") and inspect.iscoroutinefunction(member):
                setattr(cls, name, _watchdog(member, WATCHDOG_SECONDS))


class FakeServerTest(AsyncTest):
    async def asyncSetUp(self):
        self.dir = tempfile.mkdtemp(prefix="sluice-flow-test-")
        self.path = os.path.join(self.dir, "flow.sock")
        self.server = FakeFlowServer(self.path)
        await self.server.start()

    async def asyncTearDown(self):
        await self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def assertAll(self, results, status):
        self.assertEqual([r.status for r in results], [status] * len(results), results)


class RoundTripTest(FakeServerTest):
    async def test_round_trip_by_content(self):
        async with FlowClient(self.path) as client:
            results = await client.process([
                Task({"text": "hi", "n": [1, 2.5, None, True]}, b"tensor"),
                {"plain": "value"},
                None,
                "a string",
                Task(),
            ])
        self.assertEqual(len(results), 5)
        self.assertTrue(all(r.ok for r in results), results)
        self.assertEqual(results[0], Result("COMPLETED", {"text": "hi", "n": [1, 2.5, None, True]},
                                            b"tensor", ""))
        self.assertEqual(results[1].data, {"plain": "value"})
        self.assertIsNone(results[2].data)
        self.assertEqual(results[3].data, "a string")
        self.assertEqual((results[4].data, results[4].bytes), (None, b""))
        self.assertEqual(self.server.requests, 1)  # one call, one frame
        self.assertEqual(self.server.tasks, 5)

    async def test_binary_bytes_with_nuls_and_unicode(self):
        blob = bytes(range(256)) * 513
        async with FlowClient(self.path) as client:
            results = await client.process([
                Task({"s": "nul \u0000 here, ünïcødé, 🙂"}, blob),
                Task(1, bytearray(b"\x00\x00\x01")),
                Task(2, memoryview(b"\x00view\x00")),
                Task(3, b"\x00"),
            ])
        self.assertTrue(all(r.ok for r in results), results)
        self.assertEqual(results[0].data, {"s": "nul \u0000 here, ünïcødé, 🙂"})
        self.assertEqual(results[0].bytes, blob)
        self.assertEqual(results[1].bytes, b"\x00\x00\x01")
        self.assertEqual(results[2].bytes, b"\x00view\x00")
        self.assertEqual(results[3].bytes, b"\x00")

    async def test_out_of_order_answers_reach_their_callers(self):
        async with FlowClient(self.path, pool_size=1) as client:
            finished = []

            async def call(name, delay):
                results = await client.process([{"name": name, "delay": delay}])
                finished.append(name)
                return results[0].data["name"]

            names = await asyncio.gather(call("slow", 0.4), call("middle", 0.2), call("fast", 0))
        self.assertEqual(names, ["slow", "middle", "fast"])
        self.assertEqual(finished, ["fast", "middle", "slow"])
        self.assertEqual(self.server.connections, 1)
        self.assertEqual(self.server.max_inflight_per_connection, 3)

    async def test_many_concurrent_calls_over_a_small_pool(self):
        async with FlowClient(self.path, pool_size=3) as client:
            async def call(i):
                results = await client.process([{"i": i, "delay": 0.02}, Task({"j": i}, b"%d" % i)])
                return results

            all_results = await asyncio.gather(*(call(i) for i in range(300)))
            self.assertLessEqual(client.connections, 3)
        for i, results in enumerate(all_results):
            self.assertEqual(results[0].data, {"i": i, "delay": 0.02})
            self.assertEqual((results[1].data, results[1].bytes), ({"j": i}, b"%d" % i))
        self.assertLessEqual(self.server.connections, 3)
        self.assertEqual(self.server.max_open_connections, 3)
        self.assertGreater(self.server.max_inflight_per_connection, 10)  # pipelined
        self.assertEqual(self.server.requests, 300)

    async def test_idle_pool_reuses_one_connection(self):
        async with FlowClient(self.path, pool_size=4) as client:
            for i in range(20):
                self.assertTrue((await client.process([i]))[0].ok)
        self.assertEqual(self.server.connections, 1)

    async def test_timeout_ms_is_the_call_timeout(self):
        async with FlowClient(self.path) as client:
            await client.process([1, 2], timeout=2.5)
            await client.process([3], timeout=0.0001)
            await client.process([4], timeout=None)
        self.assertEqual(self.server.timeouts_ms, [2500, 2500, 1, 0])


class StatusTest(FakeServerTest):
    async def test_task_statuses_are_per_task(self):
        async with FlowClient(self.path) as client:
            results = await client.process([
                {"a": 1},
                {"fail": "handler said no"},
                {"status": "REJECTED", "message": "queue full"},
                {"status": "TIMED_OUT", "message": "waited too long"},
                {"status": "STOPPED", "message": "flow stopped"},
                {"b": 2},
            ])
        self.assertEqual([r.status for r in results],
                         ["COMPLETED", "FAILED", "REJECTED", "TIMED_OUT", "STOPPED", "COMPLETED"])
        self.assertEqual([r.ok for r in results], [True, False, False, False, False, True])
        self.assertEqual(results[1], Result("FAILED", None, b"", "handler said no"))
        self.assertEqual(results[2].error, "queue full")
        self.assertEqual(results[5].data, {"b": 2})

    async def test_answer_that_is_not_json_fails_that_task_only(self):
        async with FlowClient(self.path) as client:
            results = await client.process([{"bad_json": True}, 7])
        self.assertEqual(results[0].status, "FAILED")
        self.assertIn("not valid JSON", results[0].error)
        self.assertEqual(results[1].data, 7)

    async def test_error_frame_fails_that_request_only(self):
        async with FlowClient(self.path, pool_size=1) as client:
            other = asyncio.ensure_future(client.process([{"delay": 0.2}]))
            await asyncio.sleep(0.05)
            results = await client.process([{"error_frame": "task 1: bad JSON at 3"}, 2, 3])
            self.assertAll(results, "FAILED")
            self.assertEqual({r.error for r in results}, {"task 1: bad JSON at 3"})
            self.assertTrue((await other)[0].ok)
            self.assertTrue((await client.process([4]))[0].ok)
        self.assertEqual(self.server.connections, 1)  # the connection lived on


class FailureTest(FakeServerTest):
    async def test_server_absent_is_unavailable_naming_the_socket(self):
        await self.server.stop()
        async with FlowClient(self.path) as client:
            began = time.monotonic()
            results = await client.process([1, 2, 3])
            self.assertLess(time.monotonic() - began, 1.0)  # at once, not after the 5 s timeout
        self.assertAll(results, "UNAVAILABLE")
        for result in results:
            self.assertIn(self.path, result.error)
            self.assertIn("connect: No such file or directory", result.error)
            self.assertIsNone(result.data)

    async def test_stale_socket_file_is_unavailable(self):
        await self.server.stop()
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(self.path)  # bound, never listening: connect is refused
        try:
            async with FlowClient(self.path) as client:
                results = await client.process([1])
        finally:
            stale.close()
        self.assertEqual(results[0].status, "UNAVAILABLE")
        self.assertIn(f"{self.path}: connect: Connection refused", results[0].error)

    async def test_server_restart_recovers(self):
        async with FlowClient(self.path, pool_size=2) as client:
            self.assertTrue((await client.process([1]))[0].ok)
            inflight = asyncio.ensure_future(client.process([{"delay": 5}]))
            await asyncio.sleep(0.05)
            await self.server.stop()
            lost = (await inflight)[0]
            self.assertEqual(lost.status, "UNAVAILABLE")
            self.assertIn(self.path, lost.error)
            self.assertIn("connection closed by the server", lost.error)
            self.assertEqual((await client.process([2]))[0].status, "UNAVAILABLE")
            await self.server.start()
            results = await client.process([3, 4])
            self.assertTrue(all(r.ok for r in results), results)
            self.assertEqual([r.data for r in results], [3, 4])

    async def test_connection_error_frame_ends_everything_in_flight_on_it(self):
        async with FlowClient(self.path, pool_size=1) as client:
            bystander = asyncio.ensure_future(client.process([{"delay": 1}]))
            await asyncio.sleep(0.05)
            results = await client.process([{"connection_error": "frame over the limit"}])
            self.assertEqual(results[0].status, "UNAVAILABLE")
            self.assertIn(self.path, results[0].error)
            self.assertIn("frame over the limit", results[0].error)
            other = (await bystander)[0]
            self.assertEqual(other.status, "UNAVAILABLE")
            self.assertIn("frame over the limit", other.error)
            self.assertTrue((await client.process([5]))[0].ok)  # a new connection
        self.assertEqual(self.server.connections, 2)

    async def test_close_mid_response_ends_everything_in_flight_on_it(self):
        async with FlowClient(self.path, pool_size=1) as client:
            bystander = asyncio.ensure_future(client.process([{"delay": 1}]))
            await asyncio.sleep(0.05)
            results = await client.process([{"close": True}, Task("x", b"y" * 1000)])
            self.assertAll(results, "UNAVAILABLE")
            self.assertIn("connection closed by the server", results[0].error)
            self.assertEqual((await bystander)[0].status, "UNAVAILABLE")
            self.assertTrue((await client.process([6]))[0].ok)

    async def test_timeout_is_timed_out_and_the_late_answer_is_dropped(self):
        async with FlowClient(self.path, pool_size=1) as client:
            began = time.monotonic()
            results = await client.process([{"delay": 1.5}, 2], timeout=0.15)
            self.assertLess(time.monotonic() - began, 1.0)
            self.assertAll(results, "TIMED_OUT")
            self.assertIn("0.15 s", results[0].error)
            await asyncio.sleep(1.5)  # the late answer arrives and is discarded
            self.assertEqual((await client.process(["after"]))[0].data, "after")
        self.assertEqual(self.server.connections, 1)

    async def test_cancelled_caller_leaves_nothing_behind(self):
        async with FlowClient(self.path, pool_size=1) as client:
            call = asyncio.ensure_future(client.process([{"delay": 0.3}]))
            await asyncio.sleep(0.05)
            call.cancel()
            with self.assertRaises(asyncio.CancelledError):
                await call
            slot = client._slots[0]
            self.assertEqual(slot.load, 0)
            await asyncio.sleep(0.35)
            self.assertEqual((await client.process([1]))[0].data, 1)

    async def test_close_answers_in_flight_and_later_calls(self):
        client = FlowClient(self.path)
        inflight = asyncio.ensure_future(client.process([{"delay": 5}]))
        await asyncio.sleep(0.05)
        await client.close()
        result = (await inflight)[0]
        self.assertEqual(result.status, "UNAVAILABLE")
        self.assertIn("client closed", result.error)
        after = (await client.process([1]))[0]
        self.assertEqual(after.status, "UNAVAILABLE")
        self.assertIn("client closed", after.error)
        await client.close()  # twice is fine

    async def test_connect_in_progress_then_server_gone(self):
        await self.server.stop()
        async with FlowClient(self.path, pool_size=2) as client:
            outcome = await asyncio.gather(*(client.process([i]) for i in range(50)))
            self.assertLessEqual(client.connections, 2)
        self.assertEqual({r[0].status for r in outcome}, {"UNAVAILABLE"})


class CallerMistakesTest(FakeServerTest):
    async def test_mistakes_raise_before_sending(self):
        async with FlowClient(self.path) as client:
            self.assertEqual(await client.process([]), [])
            with self.assertRaises(TypeError):
                await client.process([object()])
            with self.assertRaises(ValueError):
                await client.process([float("nan")])
            with self.assertRaises(ValueError):
                await client.process([1], timeout=0)
            with self.assertRaises(ValueError):
                await client.process([None] * (protocol.MAX_TASKS_PER_REQUEST + 1))
        self.assertEqual(self.server.requests, 0)
        with self.assertRaises(ValueError):
            FlowClient(self.path, pool_size=0)

    async def test_request_over_the_frame_limit_fails_without_sending(self):
        async with FlowClient(self.path, max_frame_bytes=1000) as client:
            results = await client.process([Task(1, bytes(2000)), 2])
            self.assertAll(results, "FAILED")
            self.assertIn("over the server's limit of 1000 bytes", results[0].error)
            self.assertTrue((await client.process([Task(1, bytes(100))]))[0].ok)
        self.assertEqual(self.server.requests, 1)


class ProtocolTest(unittest.TestCase):
    def test_request_layout(self):
        frame, count = protocol.encode_request(7, [Task({"a": 1}, b"\x00\x01"), None], 250)
        self.assertEqual(count, 2)
        self.assertEqual(frame[:4], b"SLF1")
        magic, kind, request_id, n, body_length = protocol.HEADER.unpack_from(frame)
        self.assertEqual((kind, request_id, n, body_length), (1, 7, 2, len(frame) - 24))
        self.assertEqual(frame[24:36], (250).to_bytes(4, "little") + (7).to_bytes(4, "little")
                         + (2).to_bytes(4, "little"))
        self.assertEqual(protocol.decode_tasks(frame[24:], 2),
                         [(250, b'{"a":1}', b"\x00\x01"), (250, b"", b"")])

    def test_results_round_trip_and_truncation(self):
        frame = protocol.encode_results(9, [("COMPLETED", b"[1]", b"\x00"), ("FAILED", b"no", b"")])
        body = frame[24:]
        self.assertEqual(protocol.decode_results(body, 2),
                         [Result("COMPLETED", [1], b"\x00", ""), Result("FAILED", None, b"", "no")])
        with self.assertRaises(protocol.ProtocolError):
            protocol.decode_results(body[:-1], 2)
        with self.assertRaises(protocol.ProtocolError):
            protocol.decode_results(body + b"x", 2)
        with self.assertRaises(protocol.ProtocolError):
            protocol.decode_results(body, 3)

    def test_unknown_status_is_failed(self):
        body = protocol.ITEM.pack(42, 3, 0) + b"why"
        result = protocol.decode_results(body, 1)[0]
        self.assertEqual(result.status, "FAILED")
        self.assertIn("unknown status 42", result.error)

    def test_timeout_ms(self):
        self.assertEqual(protocol.timeout_ms(None), 0)
        self.assertEqual(protocol.timeout_ms(5.0), 5000)
        self.assertEqual(protocol.timeout_ms(0.0001), 1)
        self.assertEqual(protocol.timeout_ms(0.0015), 2)
        self.assertEqual(protocol.timeout_ms(1e12), 0xFFFFFFFF)


# ---------------------------------------------------------------------------------------------
# Programs in subprocesses: examples/flow_client.py, gunicorn, the real flow_server.

def _wait_for_socket(path, process, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args[0]} exited with {process.returncode}")
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(path)
            return
        except OSError:
            time.sleep(0.05)
        finally:
            probe.close()
    raise AssertionError(f"nothing listens on {path} after {seconds} s")


def _stop(process, seconds=10.0):
    """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=seconds)
            raise
    return process.returncode


def _run_flow_client(path, *arguments, timeout=120):
    completed = subprocess.run([PYTHON, FLOW_CLIENT, "--socket", path, *arguments],
                               capture_output=True, text=True, timeout=timeout)
    return completed


class ExampleTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sluice-flow-test-")
        self.path = os.path.join(self.dir, "flow.sock")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def start_fake_server(self):
        server = subprocess.Popen([PYTHON, FAKE_SERVER, "--socket", self.path],
                                  stdout=subprocess.DEVNULL)
        self.addCleanup(_stop, server)
        _wait_for_socket(self.path, server)
        return server

    def test_flow_client_against_the_fake_server(self):
        self.start_fake_server()
        for batch in ("1", "7"):
            completed = _run_flow_client(self.path, "--tasks", "500", "--concurrency", "8",
                                         "--batch", batch, "--bytes", "16")
            self.assertEqual(completed.returncode, 0, completed.stderr)
            lines = completed.stdout.strip().splitlines()
            self.assertEqual(len(lines), 1, completed.stdout)
            report = json.loads(lines[0])
            self.assertEqual((report["ok"], report["failed"]), (500, 0), report)
            self.assertEqual(report["statuses"], {"COMPLETED": 500})
            self.assertGreater(report["tasks_per_second"], 0)
            self.assertGreater(report["seconds"], 0)

    def test_flow_client_without_a_server_still_reports(self):
        completed = _run_flow_client(self.path, "--tasks", "10", "--concurrency", "3")
        self.assertEqual(completed.returncode, 0, completed.stderr)
        report = json.loads(completed.stdout)
        self.assertEqual((report["ok"], report["failed"]), (0, 10))
        self.assertEqual(report["statuses"], {"UNAVAILABLE": 10})
        self.assertIn(self.path, report["first_error"])

    def test_flow_client_bad_arguments_exit_2(self):
        for arguments in ([], ["--tasks", "5"], ["--tasks", "5", "--concurrency", "0"],
                          ["--tasks", "x", "--concurrency", "1"],
                          ["--tasks", "5", "--concurrency", "1", "--timeout", "-1"]):
            completed = subprocess.run([PYTHON, FLOW_CLIENT, "--socket", self.path, *arguments],
                                       capture_output=True, text=True, timeout=30)
            self.assertEqual(completed.returncode, 2, arguments)

    def test_fastapi_example_under_gunicorn(self):
        probe = subprocess.run([PYTHON, "-c", "import fastapi, uvicorn, gunicorn"],
                               capture_output=True, timeout=60)
        if probe.returncode != 0:
            self.skipTest("python3-fastapi, python3-uvicorn or gunicorn is not installed "
                          "(bash scripts/install-deps)")
        self.start_fake_server()
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            port = free.getsockname()[1]
        log = open(os.path.join(self.dir, "gunicorn.log"), "w+")
        self.addCleanup(log.close)
        environment = dict(os.environ, SLUICE_FLOW_SOCKET=self.path)
        gunicorn = subprocess.Popen(
            [PYTHON, "-m", "gunicorn", "-c", GUNICORN_CONF, "--bind", f"127.0.0.1:{port}"],
            env=environment, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        self.addCleanup(_stop, gunicorn, 20.0)
        base = f"http://127.0.0.1:{port}/process"

        def fetch(url, body=None):
            request = urllib.request.Request(url, data=body, headers={
                "content-type": "application/json"} if body is not None else {})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read())

        deadline = time.monotonic() + 30
        while True:
            try:
                status, answer = fetch(base + "?text=hello")
                break
            except (urllib.error.URLError, ConnectionError):
                if gunicorn.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    self.fail(f"gunicorn did not answer:\n{log.read()}")
                time.sleep(0.2)
        self.assertEqual((status, answer),
                         (200, {"status": "COMPLETED", "data": {"text": "hello"}}))
        status, answer = fetch(base, json.dumps({"x": [1, "two"]}).encode())
        self.assertEqual((status, answer),
                         (200, {"status": "COMPLETED", "data": {"x": [1, "two"]}}))
        status, answer = fetch(base, json.dumps({"fail": "no"}).encode())
        self.assertEqual((status, answer), (500, {"status": "FAILED", "error": "no"}))
        status, answer = fetch(base, json.dumps({"status": "REJECTED"}).encode())
        self.assertEqual(status, 429)
        self.assertEqual(_stop(gunicorn, 20.0), 0)
        log.seek(0)
        self.assertIn("Booting worker", log.read())


@unittest.skipUnless(os.path.isfile(os.environ.get("SLUICE_FLOW_SERVER", "")),
                     "SLUICE_FLOW_SERVER does not name a built flow_server")
class RealFlowServerTest(AsyncTest):
    """The client against build/bin/flow_server (whatever flow it serves: statuses only)."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sluice-flow-test-")
        self.path = os.path.join(self.dir, "flow.sock")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.server = self.start_server()

    def start_server(self):
        server = subprocess.Popen([os.environ["SLUICE_FLOW_SERVER"], "--socket", self.path],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(_stop, server)
        _wait_for_socket(self.path, server)
        return server

    async def test_flow_client_example(self):
        for batch in ("1", "8"):
            completed = await asyncio.to_thread(
                _run_flow_client, self.path, "--tasks", "2000", "--concurrency", "16",
                "--batch", batch, "--bytes", "8")
            self.assertEqual(completed.returncode, 0, completed.stderr)
            report = json.loads(completed.stdout)
            self.assertEqual((report["ok"], report["failed"]), (2000, 0), report)
        self.assertEqual(_stop(self.server), 0)  # SIGTERM: answers what it read, exits 0

    async def test_binary_round_trip_and_recovery(self):
        async with FlowClient(self.path, pool_size=2) as client:
            results = await client.process([Task({"i": i}, bytes([0, i, 0])) for i in range(10)])
            self.assertEqual({r.status for r in results}, {"COMPLETED"}, results)
            self.assertEqual(_stop(self.server), 0)
            lost = await client.process([1])
            self.assertEqual(lost[0].status, "UNAVAILABLE")
            self.assertIn(self.path, lost[0].error)
            self.server = await asyncio.to_thread(self.start_server)
            self.assertEqual((await client.process([2]))[0].status, "COMPLETED")

    async def test_invalid_frame_is_a_connection_error(self):
        reader, writer = await asyncio.open_unix_connection(self.path)
        writer.write(b"XXXX" + bytes(20))
        header = await reader.readexactly(protocol.HEADER_SIZE)
        magic, kind, request_id, count, length = protocol.HEADER.unpack(header)
        self.assertEqual((magic, kind, request_id, count), (b"SLF1", 3, 0, 0))
        await reader.readexactly(length)
        self.assertEqual(await reader.read(), b"")  # then it closes the connection
        writer.close()


if __name__ == "__main__":
    unittest.main()
