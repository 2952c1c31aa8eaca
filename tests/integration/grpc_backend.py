"""A gRPC app for tests: ``echo.Echo/Say`` (unary) and ``echo.Echo/Chat`` (bidirectional
stream), each answering every message with the same bytes. Raw bytes, no generated code.

    python grpc_backend.py --host 127.0.0.5 --port 9090
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from concurrent import futures

import grpc


def _say(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


def _chat(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    yield from requests


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9090)
    args = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.method_handlers_generic_handler(
        "echo.Echo",
        {
            "Say": grpc.unary_unary_rpc_method_handler(_say),
            "Chat": grpc.stream_stream_rpc_method_handler(_chat),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"{args.host}:{args.port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
