"""SDS resources and per-stream bookkeeping (pure): what to send Envoy, and when.

Secrets, by Istio's names:

- ``default``: ``tls_certificate`` with the certificate chain and private key as inline bytes;
- ``ROOTCA``: ``validation_context`` with ``trusted_ca`` = the root bundle.

Each resource is versioned by a hash of its content, so a rotation that keeps the roots only
pushes ``default``. :class:`SotwStream` and :class:`DeltaStream` read requests and changes and
return the response to send, if any:

- every response has a new nonce; a request echoing an older nonce is stale and ignored
  (Delta still applies its subscription changes);
- an ACK records the version; a NACK (``error_detail``) is recorded and logged, and the
  rejected content is not resent until the secret changes again;
- a change is pushed only if the content of a subscribed secret differs from what was sent.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from pilotfish.api.typeurls import SECRET_TYPE
from pilotfish.identity.secret_manager import WorkloadSecret

log = logging.getLogger("pilotfish.identity.sds")

DEFAULT_SECRET = "default"
ROOT_SECRET = "ROOTCA"
_KEEP_NONCES = 16


@dataclass(frozen=True)
class VersionedSecret:
    name: str
    version: str
    resource: secret_pb2.Secret


def build_secrets(
    secret: WorkloadSecret | None, initial_roots: str = ""
) -> dict[str, VersionedSecret]:
    """The SDS resources for the current workload secret; before the first one, ROOTCA from
    ``initial_roots`` alone (nothing without them)."""
    if secret is None:
        if not initial_roots:
            return {}
        only = secret_pb2.Secret(
            name=ROOT_SECRET,
            validation_context=common_pb2.CertificateValidationContext(
                trusted_ca={"inline_bytes": initial_roots.encode()}
            ),
        )
        return {ROOT_SECRET: VersionedSecret(ROOT_SECRET, _content_hash(only), only)}
    certificate = secret_pb2.Secret(
        name=DEFAULT_SECRET,
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain={"inline_bytes": secret.cert_chain_pem.encode()},
            private_key={"inline_bytes": secret.private_key_pem.encode()},
        ),
    )
    roots = secret_pb2.Secret(
        name=ROOT_SECRET,
        validation_context=common_pb2.CertificateValidationContext(
            trusted_ca={"inline_bytes": secret.root_bundle_pem.encode()}
        ),
    )
    return {s.name: VersionedSecret(s.name, _content_hash(s), s) for s in (certificate, roots)}


def _content_hash(message: secret_pb2.Secret) -> str:
    return hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()[:16]


def _combined(versions: Mapping[str, str]) -> str:
    text = ",".join(f"{n}={v}" for n, v in sorted(versions.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _pack(message: secret_pb2.Secret) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


@dataclass
class NackRecord:
    nonce: str
    version: str
    message: str


class _Nonces:
    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def next(self) -> str:
        return str(next(self._counter))


class SotwStream:
    """One StreamSecrets stream."""

    def __init__(self, peer: str = "") -> None:
        self.peer = peer
        self.names: frozenset[str] = frozenset()
        self.sent_nonce = ""
        self.sent_versions: dict[str, str] | None = None
        self.acked_version = ""
        self.last_nack: NackRecord | None = None
        self._nonces = _Nonces()

    def on_request(
        self, request: discovery_pb2.DiscoveryRequest, secrets: Mapping[str, VersionedSecret]
    ) -> discovery_pb2.DiscoveryResponse | None:
        if request.type_url and request.type_url != SECRET_TYPE:
            log.warning("SDS %s: ignoring a request for type %s", self.peer, request.type_url)
            return None
        nonce = request.response_nonce
        if nonce and nonce != self.sent_nonce:
            return None  # stale: answers an older response
        names = frozenset(request.resource_names)
        changed = names != self.names
        self.names = names
        if not nonce:
            return self._respond(secrets, force=True)
        if request.HasField("error_detail"):
            self.last_nack = NackRecord(nonce, request.version_info, request.error_detail.message)
            log.warning(
                "SDS %s rejected secrets %s (nonce %s): %s",
                self.peer,
                sorted(names),
                nonce,
                request.error_detail.message,
            )
        else:
            self.acked_version = request.version_info
        return self._respond(secrets, force=False) if changed else None

    def on_change(
        self, secrets: Mapping[str, VersionedSecret]
    ) -> discovery_pb2.DiscoveryResponse | None:
        if not self.names:
            return None
        return self._respond(secrets, force=False)

    def _respond(
        self, secrets: Mapping[str, VersionedSecret], *, force: bool
    ) -> discovery_pb2.DiscoveryResponse | None:
        chosen = [secrets[n] for n in sorted(self.names) if n in secrets]
        if len(chosen) < len(self.names):
            # A SotW response without a requested secret tells Envoy it does not exist: the
            # listeners and clusters needing it would go live without it. Wait until every
            # requested one is there (ROOTCA alone, before the certificate, goes to streams
            # asking for it alone: the xDS connection's roots).
            return None
        if not chosen:
            return None  # nothing to serve yet (no certificate, or unknown names)
        versions = {s.name: s.version for s in chosen}
        if not force and versions == self.sent_versions:
            return None
        self.sent_versions = versions
        self.sent_nonce = self._nonces.next()
        return discovery_pb2.DiscoveryResponse(
            version_info=_combined(versions),
            type_url=SECRET_TYPE,
            nonce=self.sent_nonce,
            resources=[_pack(s.resource) for s in chosen],
        )


class DeltaStream:
    """One DeltaSecrets stream."""

    def __init__(self, peer: str = "") -> None:
        self.peer = peer
        self.names: set[str] = set()
        #: name -> version Envoy has (as far as we know: declared at start, or sent).
        self.have: dict[str, str] = {}
        self.acked_nonce = ""
        self.last_nack: NackRecord | None = None
        self._started = False
        self._sent: OrderedDict[str, str] = OrderedDict()  # nonce -> system version
        self._nonces = _Nonces()

    def on_request(
        self, request: discovery_pb2.DeltaDiscoveryRequest, secrets: Mapping[str, VersionedSecret]
    ) -> discovery_pb2.DeltaDiscoveryResponse | None:
        if request.type_url and request.type_url != SECRET_TYPE:
            log.warning("SDS %s: ignoring a request for type %s", self.peer, request.type_url)
            return None
        if not self._started:
            self._started = True
            self.have.update(request.initial_resource_versions)
        self.names |= set(request.resource_names_subscribe) - {"*"}
        for name in request.resource_names_unsubscribe:
            self.names.discard(name)
            self.have.pop(name, None)
        nonce = request.response_nonce
        latest = next(reversed(self._sent)) if self._sent else ""
        if nonce and nonce in self._sent:
            if request.HasField("error_detail"):
                self.last_nack = NackRecord(nonce, self._sent[nonce], request.error_detail.message)
                log.warning(
                    "SDS %s rejected secrets (nonce %s): %s",
                    self.peer,
                    nonce,
                    request.error_detail.message,
                )
            elif nonce == latest:
                self.acked_nonce = nonce
            # an ACK of an older response is stale: a newer one is already on its way
        return self._respond(secrets)

    def on_change(
        self, secrets: Mapping[str, VersionedSecret]
    ) -> discovery_pb2.DeltaDiscoveryResponse | None:
        return self._respond(secrets)

    def _respond(
        self, secrets: Mapping[str, VersionedSecret]
    ) -> discovery_pb2.DeltaDiscoveryResponse | None:
        pending = [
            secrets[n]
            for n in sorted(self.names)
            if n in secrets and self.have.get(n) != secrets[n].version
        ]
        if not pending:
            return None
        for s in pending:
            self.have[s.name] = s.version
        nonce = self._nonces.next()
        version = _combined(self.have)
        self._sent[nonce] = version
        while len(self._sent) > _KEEP_NONCES:
            self._sent.popitem(last=False)
        return discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=version,
            type_url=SECRET_TYPE,
            nonce=nonce,
            resources=[
                discovery_pb2.Resource(name=s.name, version=s.version, resource=_pack(s.resource))
                for s in pending
            ],
        )
