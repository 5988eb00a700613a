"""sluice_flow: the Python client of sluice's flow server (docs/flows-python.md).

Standard library only. A sluice `Flow` served by `flow_server --socket PATH` is reached with:

    from sluice_flow import FlowClient, Task

    async with FlowClient("/tmp/sluice-flow.sock", pool_size=4) as client:
        results = await client.process([Task({"x": 1}), Task({"x": 2}, b"raw bytes")], timeout=5.0)
        for result in results:
            print(result.status, result.data if result.ok else result.error)

The wire protocol is docs/flow-protocol.md; `sluice_flow.protocol` encodes and decodes it.
"""

from .client import FlowClient
from .protocol import (
    COMPLETED,
    FAILED,
    REJECTED,
    STOPPED,
    TIMED_OUT,
    UNAVAILABLE,
    ProtocolError,
    Result,
    Task,
)

__all__ = [
    "FlowClient",
    "Task",
    "Result",
    "ProtocolError",
    "COMPLETED",
    "FAILED",
    "TIMED_OUT",
    "REJECTED",
    "STOPPED",
    "UNAVAILABLE",
]
