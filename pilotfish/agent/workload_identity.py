"""The agent's workload certificate: CA client, secret manager and SDS server, wired together.

With :class:`~pilotfish.agent.settings.IdentitySettings` the agent, before it starts Envoy:

1. opens a gRPC channel to the CA on the control plane's xDS address (TLS with the same CA
   bundle and client certificate as xDS when ``xds_tls`` is set, else plaintext), one per
   replica when there are several, tried in turn
   (:class:`~pilotfish.agent.ca_client.FailoverCaClient`);
2. runs a :class:`~pilotfish.identity.SecretManager` for the node's SPIFFE ID
   (``spiffe://<trust domain>/ns/<namespace>/sa/<service account>``): a fresh ECDSA key and CSR
   per issue, the token from ``token_file`` (re-read each time), renewal at half-life with
   jitter, the old certificate served until a new one is in;
3. serves ``default`` and ``ROOTCA`` on a Unix socket with :class:`~pilotfish.identity.SdsServer`
   (mode 0600, owned by the Envoy user when there is one); the bootstrap's ``sds-grpc``
   cluster points there.

The socket lives in ``<work_dir>/sds/`` unless that path is too long for a Unix socket
(107 bytes), in which case a private temporary directory is used instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import random
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import grpc

from pilotfish.agent.ca_client import FailoverCaClient
from pilotfish.agent.route import wait_for_route
from pilotfish.agent.settings import AgentSettings, HostPort, IdentitySettings
from pilotfish.identity import (
    SdsServer,
    SdsSettings,
    SecretManager,
    SecretManagerSettings,
    SignedCertificate,
    SpiffeId,
    WorkloadSecret,
    token_from_file,
)
from pilotfish.identity.errors import CertificateRequestError
from pilotfish.identity.sds_server import MAX_SOCKET_PATH

log = logging.getLogger("pilotfish.agent")

SOCKET_NAME = "socket"


def identity_of(settings: AgentSettings) -> SpiffeId:
    node = settings.node
    return SpiffeId(node.trust_domain, node.namespace, node.service_account)


def default_socket_path(work_dir: Path) -> Path | None:
    """``<work_dir>/sds/socket``, or None when it is too long for a Unix socket."""
    path = work_dir.resolve() / "sds" / SOCKET_NAME
    return path if len(os.fsencode(path)) <= MAX_SOCKET_PATH else None


def ca_channel(
    settings: AgentSettings, address: HostPort | None = None, roots: bytes | None = None
) -> grpc.aio.Channel:
    """A channel to the CA at ``address`` (default: the first xDS address), with the xDS TLS
    settings; ``roots`` (the mesh's trust bundle once the CA sent it) replace ``--ca-file``."""
    target = str(address or settings.discovery_address)
    tls = settings.xds_tls
    if tls is None:
        return grpc.aio.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=roots or tls.ca_file.read_bytes(),
        private_key=tls.key_file.read_bytes() if tls.key_file else None,
        certificate_chain=tls.cert_file.read_bytes() if tls.cert_file else None,
    )
    options = [("grpc.ssl_target_name_override", tls.server_name)] if tls.server_name else []
    return grpc.aio.secure_channel(target, credentials, options=options)


def ca_error_hint(error: str, tls: bool) -> str:
    """What a gRPC error talking to the CA most likely means (empty when unsure)."""
    if "CERTIFICATE_VERIFY_FAILED" in error:
        return (
            "TLS to the control plane failed: its certificate is not signed by a CA in "
            "--ca-file (is it the mesh roots, <data-dir>/ca/mesh-roots.pem?)"
        )
    if "not in peer certificate" in error:
        return (
            "TLS to the control plane failed: its certificate does not name the address "
            "dialled (pass one of its names as --xds-server-name)"
        )
    if tls and "WRONG_VERSION_NUMBER" in error:
        return (
            "TLS handshake with the control plane failed (a control plane started with "
            "--xds-plaintext needs --plaintext)"
        )
    if not tls and "UNAVAILABLE" in error and "Socket closed" in error:
        return (
            "the control plane closed the connection (it serves TLS: pass --ca-file "
            "<data-dir>/ca/mesh-roots.pem)"
        )
    return ""


class WorkloadIdentity:
    """Owns the CA channel, the secret manager and the SDS server of one agent."""

    def __init__(self, settings: AgentSettings, identity: IdentitySettings) -> None:
        self.settings = settings
        self.identity = identity
        self.spiffe_id = identity_of(settings)
        self._tmp_dir: Path | None = None
        self.socket_path = identity.socket_path or self._socket_path()
        self._ca = FailoverCaClient(
            settings.discovery_addresses,
            lambda address: ca_channel(settings, address),
            token_from_file(identity.token_file),
            node=settings.node.node_id,
        )
        self._watch: asyncio.Task[None] | None = None
        #: The roots the CA channels verify the control plane with (``--ca-file`` at first).
        self._channel_roots = ""
        if settings.xds_tls is not None:
            with contextlib.suppress(OSError):
                self._channel_roots = settings.xds_tls.ca_file.read_text()
        #: ``--ca-file`` as last read (a change there is news, see :meth:`_fetch`).
        self._file_roots = self._channel_roots
        self.manager = SecretManager(
            SecretManagerSettings(
                self.spiffe_id,
                requested_ttl=identity.cert_ttl,
                renew_fraction=identity.renew_fraction,
                jitter=identity.jitter,
            ),
            self._fetch,
        )
        uid, gid = _owner(settings.envoy_user)
        self.sds = SdsServer(
            # ROOTCA from --ca-file until the first certificate: Envoy's xDS connection
            # verifies the control plane with it and need not wait for the certificate.
            SdsSettings(
                self.socket_path,
                owner_uid=uid,
                owner_gid=gid,
                initial_roots=self._channel_roots,
            ),
            self.manager,
        )

    def _socket_path(self) -> Path:
        path = default_socket_path(self.settings.work_dir)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._give_to_envoy(path.parent)
            return path
        self._tmp_dir = Path(tempfile.mkdtemp(prefix="pilotfish-sds-"))
        self._give_to_envoy(self._tmp_dir)
        return self._tmp_dir / SOCKET_NAME

    def _give_to_envoy(self, directory: Path) -> None:
        uid, gid = _owner(self.settings.envoy_user)
        if uid is not None:
            os.chown(directory, uid, gid if gid is not None else -1)

    async def start(self) -> None:
        """Serve SDS (nothing until the first certificate) and start asking the CA for it.

        Envoy can start right after: it holds the listeners and clusters that use the
        workload certificate until SDS sends it, so its start overlaps the certificate's."""
        await self.sds.start()
        # The pod's routes may still be in the making (see ``route.py``).
        await wait_for_route(self.settings.discovery_addresses)
        await self.manager.start()
        self._watch = asyncio.create_task(self._watch_trust_bundle(), name="trust-bundle watch")

    async def _watch_trust_bundle(self) -> None:
        """Keep the CA's ``WatchTrustBundle`` stream open; when the mesh's trust bundle is not
        the one this agent serves (a root rotation step), renew the certificate at once: the
        answer carries the new bundle, which Envoy gets over SDS."""
        failures = 0
        rng = random.Random()
        while True:
            try:
                await self.manager.wait_ready()
                current = self.manager.current()
                report = {"node": self.settings.node.node_id}
                if current is not None:
                    report |= {"certChain": current.cert_chain_pem,
                               "rootBundle": current.root_bundle_pem}  # fmt: skip
                async for bundle in self._ca.watch(report):
                    failures = 0
                    current = self.manager.current()
                    if current is not None and bundle != current.root_bundle_pem:
                        log.info("the mesh trust bundle changed (%d root(s)): renewing the "
                                 "certificate now", bundle.count("BEGIN CERTIFICATE"))  # fmt: skip
                        await self.manager.renew_now()
                    if self._use_roots(bundle):
                        break  # reopen the stream over a channel that trusts the new roots
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the CA is unreachable, refused, restarting ...
                failures += 1
                log.debug("trust bundle watch ended: %s", exc)
            delay = min(30.0, 0.5 * 2 ** min(failures, 6)) if failures else 0.05
            await asyncio.sleep(delay * (0.5 + rng.random()))

    async def _fetch(self, csr_pem: str, ttl: timedelta) -> SignedCertificate:
        """A certificate from the CA. When the CA cannot be reached and ``--ca-file`` changed
        since it was read, the next attempt verifies the control plane with the file's roots:
        a pod started during a root rotation may have read them before its runtime copied
        the new ones, and would otherwise reject the control plane's new certificate for
        good."""
        try:
            return await self._ca(csr_pem, ttl)
        except CertificateRequestError:
            self._reread_ca_file()
            raise

    def _reread_ca_file(self) -> None:
        if self.settings.xds_tls is None:
            return
        try:
            text = self.settings.xds_tls.ca_file.read_text()
        except OSError:
            return
        if text == self._file_roots or "BEGIN CERTIFICATE" not in text:
            return
        self._file_roots = text
        if self._use_roots(text):
            log.info("%s changed: verifying the control plane with its %d root(s) from now on",
                     self.settings.xds_tls.ca_file, text.count("BEGIN CERTIFICATE"))  # fmt: skip

    def _use_roots(self, bundle: str) -> bool:
        """Verify the control plane with ``bundle`` from now on (its serving certificate may
        come from a new root); True when that changed the channels."""
        if self.settings.xds_tls is None or bundle == self._channel_roots or not bundle:
            return False
        self._channel_roots = bundle
        roots = bundle.encode()
        self._ca.set_channel_factory(lambda address: ca_channel(self.settings, address, roots))
        return True

    async def wait_first(self, stop: asyncio.Event) -> WorkloadSecret | None:
        """The first certificate, once installed; None if ``stop`` was set first. Logs why
        there is none yet every 10 s."""
        waiter = asyncio.ensure_future(self.manager.wait_ready())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while True:
                done, _ = await asyncio.wait(
                    {waiter, stopper}, timeout=10, return_when=asyncio.FIRST_COMPLETED
                )
                if waiter in done:
                    return waiter.result()
                if stopper in done:
                    return None
                log.warning(
                    "no certificate for %s yet (%s); the proxy is not ready until there is one",
                    self.spiffe_id,
                    self.waiting_for(),
                )
        finally:
            for task in (waiter, stopper):
                if not task.done():
                    task.cancel()

    def waiting_for(self) -> str:
        """Why there is no certificate yet: the CA's last error, explained where it can be."""
        error = self.manager.last_error
        if not error:
            return "waiting for the CA"
        hint = ca_error_hint(error, self.settings.xds_tls is not None)
        return f"{hint}: {error}" if hint else error

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        try:
            await self.sds.stop()
            await self.manager.stop()
            await self._ca.close()
        finally:
            if self._tmp_dir is not None:
                shutil.rmtree(self._tmp_dir, ignore_errors=True)


def envoy_owner(user: str | None) -> tuple[int | None, int | None]:
    """The (uid, gid) of Envoy's user (``--envoy-user``), or (None, None)."""
    return _owner(user)


def _owner(user: str | None) -> tuple[int | None, int | None]:
    if not user:
        return None, None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        if user.isdigit():
            return int(user), None
        raise
    return entry.pw_uid, entry.pw_gid


__all__ = [
    "WorkloadIdentity",
    "ca_channel",
    "ca_error_hint",
    "default_socket_path",
    "envoy_owner",
    "identity_of",
]
