"""The xDS secrets generator: ``kubernetes://`` names to SDS ``Secret`` resources.

Translation names the secrets a proxy's TLS contexts refer to over ADS (gateway and
DestinationRule ``credentialName``s, see :mod:`pilotfish.api.credentials`) and never reads
them. This module, the only one in the control plane that reads Secret bodies, resolves
those names against the stored Secrets of one revision, as Istio's ``sds.go`` does:

- **who may read what**: a proxy reads the Secrets of its own namespace; a router (gateway)
  also those of the namespaces of the Gateways that select it, its own namespace first;
- ``kubernetes://<name>``: the certificate chain and key of Secret ``<name>``
  (``tls.crt``/``tls.key``, or ``cert``/``key``);
- ``kubernetes://<name>-cacert``: the CA bundle of Secret ``<name>`` (``ca.crt`` or
  ``cacert``), else of a separate Secret ``<name>-cacert`` (``ca.crt``, ``cacert`` or
  ``tls.crt``);
- values come from ``stringData`` as written, or from ``data`` base64-decoded; certificates
  must be PEM X.509 and the key a PEM private key of the first certificate (Istio verifies SDS
  certificates before it sends them, too), so Envoy is never sent what it would reject.

A name that cannot be resolved is left out of the proxy's SDS resources, and translation
leaves out the gateway servers that name it (:meth:`SecretGenerator.available`). The reason is
a :class:`SecretError` that names the resource, the Secret and what is wrong; it is logged
once per revision.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import threading
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

from pilotfish.api.credentials import (
    CA_KEYS,
    CACERT_SECRET_KEYS,
    CERT_KEYS,
    CREDENTIAL_PREFIX,
    KEY_KEYS,
    CredentialRef,
    parse_credential_resource,
)
from pilotfish.api.node import NodeInfo
from pilotfish.config.store.base import StoredObject
from pilotfish.model.push_context import PushContext

log = logging.getLogger(__name__)


class SecretError(Exception):
    """Why an SDS resource cannot be built: names the resource, the Secret and the reason."""

    def __init__(self, resource: str, secret: str, reason: str) -> None:
        super().__init__(f"{resource}: Secret {secret}: {reason}")
        self.resource = resource
        self.secret = secret
        self.reason = reason


def _namespaces_text(namespaces: Sequence[str]) -> str:
    label = "namespace" if len(namespaces) == 1 else "namespaces"
    return f"{label} {', '.join(namespaces)}"


@functools.lru_cache(maxsize=512)
def _pem_certificates(data: bytes) -> tuple[x509.Certificate, ...]:
    """The certificates of a PEM bundle; ValueError when there is none or one is malformed."""
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ValueError("no PEM certificate in it")
    try:
        return tuple(x509.load_pem_x509_certificates(data))
    except ValueError as e:
        raise ValueError(f"malformed PEM certificate ({e})") from None


@functools.lru_cache(maxsize=512)
def _check_key_pair(cert: bytes, key: bytes) -> None:
    """ValueError unless ``key`` is an unencrypted PEM private key of the first certificate
    of ``cert`` (a valid PEM chain)."""
    leaf = _pem_certificates(cert)[0]
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as e:
        raise ValueError(f"not an unencrypted PEM private key ({e})") from None
    spki = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise ValueError("it does not match the certificate")


class SecretResolver:
    """The stored Secrets of one revision, by ``(namespace, name)``; resolves SDS names."""

    def __init__(self, secrets: Iterable[StoredObject]) -> None:
        self._by_key: dict[tuple[str, str], StoredObject] = {}
        self._namespaces_of: dict[str, list[str]] = {}
        for obj in secrets:
            self._by_key[(obj.namespace, obj.name)] = obj
            self._namespaces_of.setdefault(obj.name, []).append(obj.namespace)

    def find(self, resource: str, name: str, namespaces: Sequence[str]) -> StoredObject:
        """Secret ``name`` from the first of ``namespaces`` that has one."""
        for ns in namespaces:
            found = self._by_key.get((ns, name))
            if found is not None:
                return found
        elsewhere = sorted(set(self._namespaces_of.get(name, ())) - set(namespaces))
        if elsewhere:
            raise SecretError(
                resource,
                f"{elsewhere[0]}/{name}",
                f"this proxy may not read Secrets of {_namespaces_text(elsewhere)} "
                f"(only of {_namespaces_text(namespaces)})",
            )
        raise SecretError(resource, name, f"not found in {_namespaces_text(namespaces)}")

    def resolve(self, resource: str, namespaces: Sequence[str]) -> secret_pb2.Secret:
        """The SDS resource ``resource`` from the Secrets of ``namespaces`` (searched in
        order); raises :class:`SecretError`."""
        ref = parse_credential_resource(resource)
        if ref is None:
            raise SecretError(resource, "-", f"not a {CREDENTIAL_PREFIX} name")
        if ref.ca:
            return self._ca(ref, namespaces)
        obj = self.find(resource, ref.secret, namespaces)
        cert = _value(resource, obj, CERT_KEYS)
        key = _value(resource, obj, KEY_KEYS)
        try:
            _pem_certificates(cert)
        except ValueError as e:
            raise SecretError(resource, _ref(obj), f"certificate chain: {e}") from None
        try:
            _check_key_pair(cert, key)
        except ValueError as e:
            raise SecretError(resource, _ref(obj), f"private key: {e}") from None
        return secret_pb2.Secret(
            name=resource,
            tls_certificate=common_pb2.TlsCertificate(
                certificate_chain=base_pb2.DataSource(inline_bytes=cert),
                private_key=base_pb2.DataSource(inline_bytes=key),
            ),
        )

    def _ca(self, ref: CredentialRef, namespaces: Sequence[str]) -> secret_pb2.Secret:
        """The CA of Secret ``<name>``, else of Secret ``<name>-cacert`` (Istio's fallback)."""
        try:
            ca = _ca_bundle(ref.resource, self.find(ref.resource, ref.secret, namespaces), CA_KEYS)
        except SecretError as own:
            try:
                extra = self.find(ref.resource, ref.cacert_secret, namespaces)
                ca = _ca_bundle(ref.resource, extra, CACERT_SECRET_KEYS)
            except SecretError as other:
                raise SecretError(
                    ref.resource,
                    f"{own.secret} (or {other.secret})",
                    f"no CA bundle: {own.reason}; {other.reason}",
                ) from None
        return secret_pb2.Secret(
            name=ref.resource,
            validation_context=common_pb2.CertificateValidationContext(
                trusted_ca=base_pb2.DataSource(inline_bytes=ca)
            ),
        )


def _ref(obj: StoredObject) -> str:
    return f"{obj.namespace}/{obj.name}"


def _value(resource: str, obj: StoredObject, keys: Sequence[str]) -> bytes:
    """The first of ``keys`` the Secret has: ``stringData`` as written, ``data`` decoded."""
    data = obj.body.get("data") or {}
    plain = obj.body.get("stringData") or {}
    for key in keys:
        if plain.get(key) is not None:
            value = str(plain[key]).encode()
        elif data.get(key) is not None:
            try:
                value = base64.b64decode(str(data[key]), validate=True)
            except (binascii.Error, ValueError):
                raise SecretError(resource, _ref(obj), f"data[{key}] is not valid base64") from None
        else:
            continue
        if not value.strip():
            raise SecretError(resource, _ref(obj), f"{key} is empty")
        return value
    raise SecretError(resource, _ref(obj), f"has no {' or '.join(keys)}")


def _ca_bundle(resource: str, obj: StoredObject, keys: Sequence[str]) -> bytes:
    ca = _value(resource, obj, keys)
    try:
        _pem_certificates(ca)
    except ValueError as e:
        raise SecretError(resource, _ref(obj), f"CA bundle: {e}") from None
    return ca


def readable_namespaces(node: NodeInfo, push: PushContext) -> tuple[str, ...]:
    """Whose Secrets a proxy may read: its own namespace; for a router, then the namespaces
    of the Gateways that select it."""
    out = [node.namespace]
    if node.proxy_type == "router":
        for gw in push.gateways_for(node.labels):
            if gw.namespace not in out:
                out.append(gw.namespace)
    return tuple(out)


class SecretGenerator:
    """The SDS resources of one PushContext: the ``Credentials`` translation asks, and the
    ``Secret`` resources the xDS server sends. Thread-safe; results are cached per
    ``(resource, readable namespaces)``."""

    def __init__(self, push: PushContext) -> None:
        self.push = push
        self.resolver = SecretResolver(push.objects("Secret"))
        self._results: dict[tuple[str, tuple[str, ...]], secret_pb2.Secret | SecretError] = {}
        self._lock = threading.Lock()

    def _result(self, node: NodeInfo, resource: str) -> secret_pb2.Secret | SecretError:
        key = (resource, readable_namespaces(node, self.push))
        with self._lock:
            found = self._results.get(key)
        if found is not None:
            return found
        result: secret_pb2.Secret | SecretError
        try:
            result = self.resolver.resolve(resource, key[1])
        except SecretError as e:
            result = e
        with self._lock:
            if key not in self._results:
                self._results[key] = result
                if isinstance(result, SecretError):
                    log.warning("%s (proxy %s)", result, node.node_id)
            return self._results[key]

    def available(self, node: NodeInfo, resource: str) -> bool:
        """True when ``resource`` can be served to the proxy of ``node``."""
        return not isinstance(self._result(node, resource), SecretError)

    def generate(self, node: NodeInfo, resources: Iterable[str]) -> dict[str, secret_pb2.Secret]:
        """The SDS resources for ``resources`` the proxy may have; the others are left out
        (Envoy keeps waiting for them) and logged."""
        out: dict[str, secret_pb2.Secret] = {}
        for resource in resources:
            result = self._result(node, resource)
            if not isinstance(result, SecretError):
                out[resource] = result
        return out


def secrets_for(push: PushContext) -> SecretGenerator:
    """The one :class:`SecretGenerator` of ``push`` (a ``CredentialsFactory``)."""
    return push.memo(("xds.secrets",), lambda: SecretGenerator(push))


__all__ = [
    "SecretError",
    "SecretGenerator",
    "SecretResolver",
    "readable_namespaces",
    "secrets_for",
]
