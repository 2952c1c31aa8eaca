"""The CA over gRPC: ``/pilotfish.security.v1.CertificateService/CreateCertificate``.

One unary method with JSON bodies (no proto files), served by the control plane's grpc.aio
server on 15012 next to ADS::

    request   {"csr": "<PEM>", "ttlSeconds": 86400}        metadata  authorization: Bearer <token>
    response  {"certChain": "<PEM>", "rootBundle": "<PEM>", "identity": "spiffe://...",
               "serial": "<hex>", "notBefore": "...", "notAfter": "..."}

Status codes: UNAUTHENTICATED (no, malformed, forged or expired token), PERMISSION_DENIED
(the CSR asks for another identity, or another trust domain), INVALID_ARGUMENT (body or CSR
unusable), INTERNAL (anything else; details only in the server log).

:func:`add_to_server` registers the method; :func:`request_certificate` is the agent's client.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

import grpc

from pilotfish.identity.certificate import SignedCertificate
from pilotfish.identity.errors import (
    CertificateRequestError,
    CsrError,
    IdentityError,
    TokenError,
)

if TYPE_CHECKING:  # the CA side; the agent uses request_certificate only
    from pilotfish.identity.csr_service import CertificateAuthorityService

log = logging.getLogger("pilotfish.identity")

SERVICE_NAME = "pilotfish.security.v1.CertificateService"
METHOD_NAME = "CreateCertificate"
METHOD_PATH = f"/{SERVICE_NAME}/{METHOD_NAME}"
MAX_REQUEST_BYTES = 64 * 1024


def bearer_token(metadata: Any) -> str | None:
    """The token of an ``authorization: Bearer <token>`` entry, if any."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        text = value.decode() if isinstance(value, bytes) else str(value)
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


def parse_request(body: bytes) -> tuple[str, timedelta | None]:
    """(csr_pem, ttl) from a request body; ValueError saying which field is wrong."""
    if len(body) > MAX_REQUEST_BYTES:
        raise ValueError(f"request body larger than {MAX_REQUEST_BYTES} bytes")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"request body is not JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError("request body must be a JSON object")
    csr = data.get("csr")
    if not isinstance(csr, str) or not csr:
        raise ValueError("csr: a PEM certificate signing request is required")
    ttl_seconds = data.get("ttlSeconds")
    if ttl_seconds is None:
        return csr, None
    if not isinstance(ttl_seconds, int) or isinstance(ttl_seconds, bool):
        raise ValueError("ttlSeconds: must be an integer")
    return csr, timedelta(seconds=ttl_seconds)


def _handler(
    service: CertificateAuthorityService,
) -> Callable[[bytes, grpc.aio.ServicerContext[Any, Any]], Awaitable[bytes]]:
    # A plain coroutine function: grpc.aio only awaits what inspect sees as one.
    async def create_certificate(body: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        async def abort(code: grpc.StatusCode, message: str) -> NoReturn:
            await context.abort(code, message)
            raise AssertionError("unreachable")  # context.abort always raises

        token = bearer_token(context.invocation_metadata())
        if token is None:
            await abort(grpc.StatusCode.UNAUTHENTICATED, "missing authorization: Bearer token")
        try:
            csr, ttl = parse_request(body)
        except ValueError as e:
            await abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        try:
            signed = await asyncio.to_thread(service.sign, token, csr, ttl)
        except TokenError as e:
            await abort(grpc.StatusCode.UNAUTHENTICATED, str(e))
        except CsrError as e:
            await abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except IdentityError as e:  # IdentityMismatchError, another trust domain
            await abort(grpc.StatusCode.PERMISSION_DENIED, str(e))
        except Exception:
            log.exception("certificate signing failed")
            await abort(grpc.StatusCode.INTERNAL, "internal error while signing")
        return json.dumps(signed.to_json()).encode()

    return create_certificate


def add_to_server(server: grpc.aio.Server, service: CertificateAuthorityService) -> None:
    """Register CreateCertificate on a grpc.aio server (before ``start()``)."""
    handler = grpc.method_handlers_generic_handler(
        SERVICE_NAME, {METHOD_NAME: grpc.unary_unary_rpc_method_handler(_handler(service))}
    )
    server.add_generic_rpc_handlers((handler,))


async def request_certificate(
    channel: grpc.aio.Channel,
    token: str,
    csr_pem: str,
    ttl: timedelta | None = None,
    *,
    timeout: float = 30.0,
) -> SignedCertificate:
    """Ask the CA to sign ``csr_pem``; raises CertificateRequestError if it refuses."""
    request: dict[str, Any] = {"csr": csr_pem}
    if ttl is not None:
        request["ttlSeconds"] = int(ttl.total_seconds())
    call = channel.unary_unary(METHOD_PATH)
    try:
        body = await call(
            json.dumps(request).encode(),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=timeout,
        )
    except grpc.aio.AioRpcError as e:
        raise CertificateRequestError(e.code().name, e.details() or "") from None
    try:
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return SignedCertificate.from_json(data)
    except ValueError as e:
        raise CertificateRequestError("INVALID_RESPONSE", f"unusable CA response: {e}") from None


def grpc_fetcher(
    channel: grpc.aio.Channel, token: str | Callable[[], str], *, timeout: float = 30.0
) -> Callable[[str, timedelta], Awaitable[SignedCertificate]]:
    """A :data:`~pilotfish.identity.secret_manager.CertificateFetcher` over ``channel``.

    ``token`` may be a callable, called for every request (e.g. to re-read a token file).
    """

    async def fetch(csr_pem: str, ttl: timedelta) -> SignedCertificate:
        current = token() if callable(token) else token
        return await request_certificate(channel, current, csr_pem, ttl, timeout=timeout)

    return fetch
