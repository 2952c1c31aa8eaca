"""A small gRPC external authorizer for mesh tests (Envoy's ``envoy.service.auth.v3``
``Authorization/Check``), like Istio's ext-authz sample's gRPC side.

Run as ``python ext_authz_grpc_provider.py --host 127.0.0.11 --port 9000 --allow 127.0.0.5``.
A check whose source address is one of ``--allow`` is allowed, any other is denied
(``PERMISSION_DENIED``). Works for HTTP requests and for TCP connections (the ext_authz
network filter sends the connection's addresses only). For HTTP requests, as Istio's sample,
a request carrying ``x-ext-authz: allow`` is allowed too, with ``x-ext-authz-check-result:
allowed`` added for the app; a denied one gets 403 with a body naming the authorizer.
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
        http = request.attributes.request.http
        ok = source in self.allowed or http.headers.get("x-ext-authz") == "allow"
        out = external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK if ok else code_pb2.PERMISSION_DENIED)
        )
        if http.method and ok:
            header = out.ok_response.headers.add().header
            header.key, header.value = "x-ext-authz-check-result", "allowed"
        elif http.method:
            out.denied_response.status.code = 403  # envoy.type.v3.StatusCode.Forbidden
            out.denied_response.body = "denied by the gRPC ext_authz"
        return out


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
