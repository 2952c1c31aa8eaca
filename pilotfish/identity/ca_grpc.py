"""The CA over gRPC: ``/pilotfish.security.v1.CertificateService/CreateCertificate``.

One unary method with JSON bodies (no proto files), served by the control plane's grpc.aio
server on 15012 next to ADS::

    request   {"csr": "<PEM>", "ttlSeconds": 86400, "node": "<node id>"}
              metadata  authorization: Bearer <token>
    response  {"certChain": "<PEM>", "rootBundle": "<PEM>", "identity": "spiffe://...",
               "serial": "<hex>", "notBefore": "...", "notAfter": "..."}

and one server-streaming method, ``WatchTrustBundle``, that agents keep open: the request
reports what the agent serves (``{"node", "certChain", "rootBundle"}``, same token), each
response is the CA's trust bundle (``{"rootBundle": "<PEM>"}``), sent at once and again
whenever it changes (a root rotation step). ``node`` (optional) only labels the agent in a
rotation's progress (:mod:`~pilotfish.identity.trust_watch`); the identity is the token's.

Status codes: UNAUTHENTICATED (no, malformed, forged or expired token), PERMISSION_DENIED
(the CSR asks for another identity, or another trust domain), INVALID_ARGUMENT (body or CSR
unusable), INTERNAL (anything else; details only in the server log).

:func:`add_to_server` registers the method; :func:`request_certificate` is the agent's client.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
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
WATCH_METHOD = "WatchTrustBundle"
WATCH_PATH = f"/{SERVICE_NAME}/{WATCH_METHOD}"
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


def _json_object(body: bytes) -> dict[str, Any]:
    if len(body) > MAX_REQUEST_BYTES:
        raise ValueError(f"request body larger than {MAX_REQUEST_BYTES} bytes")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"request body is not JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError("request body must be a JSON object")
    for name in ("node", "certChain", "rootBundle"):
        if not isinstance(data.get(name, ""), str):
            raise ValueError(f"{name}: must be a string")
    return data


def request_node(body: bytes) -> str:
    """The optional ``node`` of a request body ("" when absent or unreadable)."""
    try:
        return str(_json_object(body).get("node") or "")
    except ValueError:
        return ""


def parse_request(body: bytes) -> tuple[str, timedelta | None]:
    """(csr_pem, ttl) from a request body; ValueError saying which field is wrong."""
    data = _json_object(body)
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
            signed = await asyncio.to_thread(service.sign, token, csr, ttl, request_node(body))
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


def _watch_handler(
    service: CertificateAuthorityService,
) -> Callable[[bytes, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[bytes]]:
    async def watch_trust_bundle(
        body: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        token = bearer_token(context.invocation_metadata())
        if token is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "missing authorization: Bearer token"
            )
            return
        try:
            claims = service.tokens.verify(token)
            data = _json_object(body)
        except TokenError as e:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(e))
            return
        except ValueError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            return
        identity = claims.identity(service.ca.trust_domain).uri
        node = str(data.get("node") or "")
        trust = service.trust
        changed = asyncio.Event()
        trust.subscribe(changed)
        if node:
            trust.stream_opened(node)
            trust.record(node, identity, str(data.get("certChain") or ""),
                         str(data.get("rootBundle") or ""), service.ca.roots)  # fmt: skip
        try:
            sent = None
            while True:
                changed.clear()
                bundle = service.ca.trust_bundle()
                if bundle != sent:
                    yield json.dumps({"rootBundle": bundle}).encode()
                    sent = bundle
                await changed.wait()
        finally:
            trust.unsubscribe(changed)
            if node:
                trust.stream_closed(node)

    return watch_trust_bundle


def add_to_server(server: grpc.aio.Server, service: CertificateAuthorityService) -> None:
    """Register CreateCertificate and WatchTrustBundle on a grpc.aio server (before
    ``start()``)."""
    handler = grpc.method_handlers_generic_handler(
        SERVICE_NAME,
        {
            METHOD_NAME: grpc.unary_unary_rpc_method_handler(_handler(service)),
            WATCH_METHOD: grpc.unary_stream_rpc_method_handler(_watch_handler(service)),
        },
    )
    server.add_generic_rpc_handlers((handler,))


async def watch_trust_bundle(
    channel: grpc.aio.Channel, token: str, report: dict[str, str]
) -> AsyncIterator[str]:
    """The CA's trust bundle now and after every change (PEM), reporting ``report`` (node,
    certChain, rootBundle) when the stream opens; raises CertificateRequestError when the
    stream fails."""
    call = channel.unary_stream(WATCH_PATH)(
        json.dumps(report).encode(), metadata=(("authorization", f"Bearer {token}"),)
    )
    try:
        async for body in call:
            data = json.loads(body)
            bundle = data.get("rootBundle") if isinstance(data, dict) else None
            if not isinstance(bundle, str):
                raise CertificateRequestError("INVALID_RESPONSE", "no rootBundle in the answer")
            yield bundle
    except grpc.aio.AioRpcError as e:
        raise CertificateRequestError(e.code().name, e.details() or "") from None
    finally:
        call.cancel()


async def request_certificate(
    channel: grpc.aio.Channel,
    token: str,
    csr_pem: str,
    ttl: timedelta | None = None,
    *,
    timeout: float = 30.0,
    node: str = "",
) -> SignedCertificate:
    """Ask the CA to sign ``csr_pem``; raises CertificateRequestError if it refuses."""
    request: dict[str, Any] = {"csr": csr_pem}
    if node:
        request["node"] = node
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
