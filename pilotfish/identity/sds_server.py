"""The agent's Secret Discovery Service for Envoy, on a Unix domain socket (agent side).

Envoy reaches it through a static cluster with a ``pipe`` address and HTTP/2, and asks for
``default`` and ``ROOTCA`` (see ``sds_protocol.py``) over StreamSecrets (SotW) or DeltaSecrets;
FetchSecrets answers one-off requests. When the secret source changes (a renewal or a forced
rotation) every open stream gets the new version; the next TLS handshake uses it, without
restarting Envoy.

The socket file is made mode 0600 (and, when ``owner_uid``/``owner_gid`` are set, given to the
proxy user) right after binding, so only its owner (and root) can connect. Keep it in a
directory only the agent and the proxy user can enter to rule out any window before that.

::

    server = SdsServer(SdsSettings(Path("/var/run/secrets/workload-spiffe-uds/socket")), manager)
    await server.start()
    ...
    await server.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc

from pilotfish.identity.sds_protocol import (
    SECRET_TYPE,
    DeltaStream,
    NackRecord,
    SotwStream,
    VersionedSecret,
    build_secrets,
)
from pilotfish.identity.secret_manager import SecretCallback, WorkloadSecret

log = logging.getLogger("pilotfish.identity.sds")

#: sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class SecretSource(Protocol):
    """What the SDS server serves from (a :class:`~.secret_manager.SecretManager`)."""

    def current(self) -> WorkloadSecret | None: ...

    def subscribe(self, callback: SecretCallback) -> Callable[[], None]: ...


@dataclass(frozen=True)
class SdsSettings:
    socket_path: Path
    #: Give the socket to the proxy user (the agent usually runs as root).
    owner_uid: int | None = None
    owner_gid: int | None = None
    mode: int = 0o600
    #: ROOTCA served before the first certificate (PEM; the trust bundle comes with each
    #: certificate after that).
    initial_roots: str = ""

    def __post_init__(self) -> None:
        if len(os.fsencode(self.socket_path)) > MAX_SOCKET_PATH:
            raise ValueError(
                f"SDS socket path {self.socket_path} is longer than {MAX_SOCKET_PATH} bytes"
            )

    @property
    def address(self) -> str:
        return f"unix:{self.socket_path}"


class _Changed:
    pass


class _End:
    pass


_CHANGED, _END = _Changed(), _End()


class _Servicer(sds_pb2_grpc.SecretDiscoveryServiceServicer):
    def __init__(self, server: SdsServer) -> None:
        self._server = server

    async def StreamSecrets(
        self, request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest], context: Any
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        stream = SotwStream(peer=context.peer())
        async for response in self._server._serve(
            request_iterator, stream, stream.on_request, stream.on_change
        ):
            yield response

    async def DeltaSecrets(
        self, request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest], context: Any
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        stream = DeltaStream(peer=context.peer())
        async for response in self._server._serve(
            request_iterator, stream, stream.on_request, stream.on_change
        ):
            yield response

    async def FetchSecrets(
        self, request: discovery_pb2.DiscoveryRequest, context: Any
    ) -> discovery_pb2.DiscoveryResponse:
        stream = SotwStream(peer=context.peer())
        response = stream.on_request(request, self._server.secrets())
        if response is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no certificate yet")
        assert response is not None
        return response


class SdsServer:
    """Serves a :class:`SecretSource` to Envoy over SDS on a Unix socket."""

    def __init__(self, settings: SdsSettings, source: SecretSource) -> None:
        self.settings = settings
        self._source = source
        self._server: grpc.aio.Server | None = None
        self._cache: tuple[int, dict[str, VersionedSecret]] = (-1, {})
        self._streams: set[SotwStream | DeltaStream] = set()
        #: Every NACK received, oldest first (also logged).
        self.nacks: list[NackRecord] = []

    @property
    def address(self) -> str:
        return self.settings.address

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    def streams(self) -> list[SotwStream | DeltaStream]:
        """The open streams' bookkeeping (names, acked version/nonce, last NACK)."""
        return list(self._streams)

    def secrets(self) -> dict[str, VersionedSecret]:
        """The resources for the current secret (built once per version)."""
        secret = self._source.current()
        version = secret.version if secret else 0
        if self._cache[0] != version:
            self._cache = (version, build_secrets(secret, self.settings.initial_roots))
        return self._cache[1]

    async def start(self) -> None:
        path = self.settings.socket_path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise FileExistsError(f"SDS socket path {path} exists and is not a socket")
            path.unlink()  # left over from a previous run
        server = grpc.aio.server()
        sds_pb2_grpc.add_SecretDiscoveryServiceServicer_to_server(_Servicer(self), server)
        server.add_insecure_port(self.settings.address)
        await server.start()
        self._server = server
        try:
            os.chmod(path, self.settings.mode)
            if self.settings.owner_uid is not None or self.settings.owner_gid is not None:
                uid = -1 if self.settings.owner_uid is None else self.settings.owner_uid
                gid = -1 if self.settings.owner_gid is None else self.settings.owner_gid
                os.chown(path, uid, gid)
        except OSError:
            await self.stop()
            raise
        log.info("SDS serving %s", self.address)

    async def stop(self, grace: float | None = 0.5) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)
        with contextlib.suppress(FileNotFoundError):
            path = self.settings.socket_path
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()

    async def __aenter__(self) -> SdsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(
        self,
        requests: AsyncIterator[Req],
        stream: SotwStream | DeltaStream,
        on_request: Callable[[Req, dict[str, VersionedSecret]], Resp | None],
        on_change: Callable[[dict[str, VersionedSecret]], Resp | None],
    ) -> AsyncIterator[Resp]:
        """Run one stream: requests and secret changes in, responses out."""
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Any] = asyncio.Queue()

        def changed(_secret: WorkloadSecret) -> None:
            loop.call_soon_threadsafe(inbox.put_nowait, _CHANGED)

        async def read() -> None:
            try:
                async for request in requests:
                    inbox.put_nowait(request)
            except (grpc.aio.AioRpcError, asyncio.CancelledError):
                pass
            finally:
                inbox.put_nowait(_END)

        unsubscribe = self._source.subscribe(changed)
        reader = asyncio.create_task(read())
        self._streams.add(stream)
        nack = None
        try:
            while True:
                item = await inbox.get()
                if item is _END:
                    return
                secrets = self.secrets()
                response = on_change(secrets) if item is _CHANGED else on_request(item, secrets)
                if stream.last_nack is not nack:
                    nack = stream.last_nack
                    if nack is not None:
                        self.nacks.append(nack)
                if response is not None:
                    yield response
        finally:
            self._streams.discard(stream)
            unsubscribe()
            reader.cancel()


__all__ = ["SECRET_TYPE", "SdsServer", "SdsSettings", "SecretSource"]
