"""A FastAPI app whose routes send their work through a sluice flow (examples/flow_fastapi).

Each web worker process has its own FlowClient, created at startup and closed at shutdown; the
flow itself runs in the flow server, its own process (`flow_server --socket PATH`), shared by every
worker. Configuration (environment): SLUICE_FLOW_SOCKET (default /tmp/sluice-flow.sock),
SLUICE_FLOW_TIMEOUT seconds per request (default 5), SLUICE_FLOW_POOL_SIZE connections per worker
(default 4).

Answers: 200 {"status": "COMPLETED", "data": ...} when the task completed; otherwise
{"status": ..., "error": ...} with 503 (UNAVAILABLE: no flow server; STOPPED: it is stopping),
504 (TIMED_OUT), 429 (REJECTED: the flow is full, retry later) or 500 (FAILED).
"""

import os
import sys
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), os.pardir, os.pardir,
                                "python"))

from fastapi import Body, FastAPI  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402

from sluice_flow import FlowClient, Task  # noqa: E402

SOCKET = os.environ.get("SLUICE_FLOW_SOCKET", "/tmp/sluice-flow.sock")
TIMEOUT = float(os.environ.get("SLUICE_FLOW_TIMEOUT", "5"))
POOL_SIZE = int(os.environ.get("SLUICE_FLOW_POOL_SIZE", "4"))

HTTP_STATUS = {"UNAVAILABLE": 503, "STOPPED": 503, "TIMED_OUT": 504, "REJECTED": 429,
               "FAILED": 500}

app = FastAPI(title="sluice flow example")
flow: FlowClient | None = None


@app.on_event("startup")
async def open_flow_client() -> None:
    # Created in the worker, on the worker's event loop; nothing is connected until the first
    # request, so workers start even while the flow server is not up yet.
    global flow
    flow = FlowClient(SOCKET, pool_size=POOL_SIZE)


@app.on_event("shutdown")
async def close_flow_client() -> None:
    if flow is not None:
        await flow.close()


async def run_task(data: Any):
    result = (await flow.process([Task(data)], timeout=TIMEOUT))[0]
    if result.ok:
        return {"status": result.status, "data": result.data}
    return JSONResponse({"status": result.status, "error": result.error},
                        status_code=HTTP_STATUS.get(result.status, 500))


@app.get("/ping")
async def ping():
    """No flow at all: what FastAPI alone serves (the reference of bench/flow_bench.sh)."""
    return {"ok": True}


@app.get("/process")
async def process_get(text: str = ""):
    """Sends {"text": text} through the flow."""
    return await run_task({"text": text})


@app.post("/process")
async def process_post(data: Any = Body(None)):
    """Sends the request's JSON body through the flow, as it is."""
    return await run_task(data)
