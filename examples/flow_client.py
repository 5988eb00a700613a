#!/usr/bin/python3
"""Load generator for a sluice flow server: N tasks from C concurrent callers, one JSON line out.

    examples/flow_client.py --socket /tmp/sluice-flow.sock --tasks 100000 --concurrency 64 --batch 8

Each caller sends requests of --batch tasks (data {"i": index}, plus --bytes raw bytes) until N
tasks have gone, through one FlowClient (sluice_flow, found in ../python, no installation needed).
Prints {"ok", "failed", "seconds", "tasks_per_second", "statuses", "first_error", ...} and exits 0
when it ran, whatever the tasks' statuses; 2 on bad arguments.
"""

import argparse
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))),
                                "python"))

from sluice_flow import FlowClient, Task  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Send tasks to a sluice flow server.")
    parser.add_argument("--socket", required=True, help="the flow server's Unix socket")
    parser.add_argument("--tasks", type=int, required=True, help="tasks to send in all")
    parser.add_argument("--concurrency", type=int, required=True, help="concurrent callers")
    parser.add_argument("--batch", type=int, default=1, help="tasks per request (default 1)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds per request, also each task's timeout (default 5)")
    parser.add_argument("--pool-size", type=int, default=4, help="connections (default 4)")
    parser.add_argument("--bytes", type=int, default=0, help="raw bytes per task (default 0)")
    args = parser.parse_args(argv)
    if args.tasks < 0:
        parser.error("--tasks must be 0 or more")
    if args.concurrency < 1 or args.batch < 1 or args.pool_size < 1:
        parser.error("--concurrency, --batch and --pool-size must be at least 1")
    if args.batch > 65536:
        parser.error("--batch must be at most 65536 (the protocol's limit per request)")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if args.bytes < 0:
        parser.error("--bytes must be 0 or more")
    return args


async def run(args):
    statuses = {}
    first_error = None
    next_index = 0
    raw = bytes(args.bytes)

    async def caller(client):
        nonlocal next_index, first_error
        while next_index < args.tasks:
            start = next_index
            end = min(start + args.batch, args.tasks)
            next_index = end
            results = await client.process([Task({"i": i}, raw) for i in range(start, end)],
                                           timeout=args.timeout)
            for result in results:
                statuses[result.status] = statuses.get(result.status, 0) + 1
                if first_error is None and not result.ok:
                    first_error = f"{result.status}: {result.error}"

    async with FlowClient(args.socket, pool_size=args.pool_size) as client:
        began = time.perf_counter()
        await asyncio.gather(*(caller(client) for _ in range(args.concurrency)))
        seconds = time.perf_counter() - began
    ok = statuses.get("COMPLETED", 0)
    return {
        "ok": ok,
        "failed": args.tasks - ok,
        "seconds": round(seconds, 6),
        "tasks_per_second": round(args.tasks / seconds, 1) if seconds > 0 else 0.0,
        "statuses": statuses,
        "first_error": first_error,
        "tasks": args.tasks,
        "concurrency": args.concurrency,
        "batch": args.batch,
        "pool_size": args.pool_size,
    }


def main(argv=None):
    args = parse_args(argv)
    print(json.dumps(asyncio.run(run(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
