"""A gRPC app for tests: ``echo.Echo/Say`` (unary) and ``echo.Echo/Chat`` (bidirectional
stream), each answering every message with the same bytes. Raw bytes, no generated code.

Two unary methods misbehave on purpose, to observe retries:

- ``echo.Echo/Flaky`` with ``KEY:N`` fails the first N calls of KEY with UNAVAILABLE, then
  answers ``KEY after M attempts``;
- ``echo.Echo/Stall`` with ``KEY`` never answers the first call of KEY (until the caller gives
  up), then answers ``KEY after M attempts``.

    python grpc_backend.py --host 127.0.0.5 --port 9090
"""

from __future__ import annotations

import argparse
import collections
import threading
from collections.abc import Iterator
from concurrent import futures

import grpc


def _say(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


_calls: collections.Counter[str] = collections.Counter()
_lock = threading.Lock()


def _count(key: str) -> int:
    with _lock:
        _calls[key] += 1
        return _calls[key]


def _flaky(request: bytes, context: grpc.ServicerContext) -> bytes:
    key, _, failures = request.decode().partition(":")
    seen = _count(key)
    if seen <= int(failures or 0):
        context.abort(grpc.StatusCode.UNAVAILABLE, f"{key}: attempt {seen} fails")
    return f"{key} after {seen} attempts".encode()


def _stall(request: bytes, context: grpc.ServicerContext) -> bytes:
    key = request.decode()
    seen = _count(key)
    if seen == 1:
        done = threading.Event()
        context.add_callback(done.set)
        done.wait(30)
    return f"{key} after {seen} attempts".encode()


def _chat(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    yield from requests


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9090)
    args = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handler = grpc.method_handlers_generic_handler(
        "echo.Echo",
        {
            "Say": grpc.unary_unary_rpc_method_handler(_say),
            "Chat": grpc.stream_stream_rpc_method_handler(_chat),
            "Flaky": grpc.unary_unary_rpc_method_handler(_flaky),
            "Stall": grpc.unary_unary_rpc_method_handler(_stall),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"{args.host}:{args.port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
