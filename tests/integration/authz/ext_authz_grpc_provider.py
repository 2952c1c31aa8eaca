"""A small gRPC external authorizer for mesh tests (Envoy's ``envoy.service.auth.v3``
``Authorization/Check``), like Istio's ext-authz sample's gRPC side.

Run as ``python ext_authz_grpc_provider.py --host 127.0.0.11 --port 9000 --allow 127.0.0.5``.
A check whose source address is one of ``--allow`` is allowed, any other is denied
(``PERMISSION_DENIED``). Works for HTTP requests and for TCP connections (the ext_authz
network filter sends the connection's addresses only).
"""

from __future__ import annotations

import argparse
from concurrent import futures

import grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.rpc import code_pb2, status_pb2


class Authorizer(external_auth_pb2_grpc.AuthorizationServicer):
    def __init__(self, allowed: set[str]) -> None:
        self.allowed = allowed

    def Check(
        self, request: external_auth_pb2.CheckRequest, context: grpc.ServicerContext
    ) -> external_auth_pb2.CheckResponse:
        source = request.attributes.source.address.socket_address.address
        ok = source in self.allowed
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK if ok else code_pb2.PERMISSION_DENIED)
        )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--allow", action="append", default=[])
    args = p.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(Authorizer(set(args.allow)), server)
    server.add_insecure_port(f"{args.host}:{args.port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
