"""What a proxy tells the control plane about itself: node id, cluster and metadata.

The agent renders these into Envoy's bootstrap ``node``; the xDS server hands them to the
model, which builds a ``Proxy`` from them; the registry turns a connected sidecar into an
endpoint of the services that select its labels. This module is the one contract among them.

Node id, as Istio writes it: ``TYPE~IP~POD_NAME.NAMESPACE~NAMESPACE.svc.cluster.local`` with
TYPE ``sidecar`` or ``router``. Node cluster: ``APP.NAMESPACE`` (Istio's service cluster).

Interception modes:

- ``REDIRECT`` (pods of the local runtime, VMs): iptables sends outbound traffic to 15001 and
  inbound to 15006; the app keeps its ports; endpoints are ``IP:targetPort``.
- ``NONE`` ("explicit" mode, for loopback tests and hosts without capture): the app sends its
  requests to the outbound listener at ``127.0.0.1:outbound_port`` with the service in the Host
  header (``reviews:9080``), and the sidecar receives inbound traffic on
  ``inbound_ports[app_port]`` bound to ``IP``; endpoints are ``IP:inbound_ports[targetPort]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pilotfish.api.mesh import DEFAULT_DOMAIN_SUFFIX, DEFAULT_TRUST_DOMAIN

#: Node metadata key with the port of the proxy's Envoy admin on 127.0.0.1 (in the proxy's own
#: network namespace); an extra key, kept in :attr:`NodeInfo.extra`.
ADMIN_PORT_METADATA = "ADMIN_PORT"
#: Node metadata key with the CA bundle file the proxy's host trusts (its system roots); an
#: extra key, kept in :attr:`NodeInfo.extra`. TLS origination without a CA of its own
#: verifies servers with it, as Istio verifies with the system roots.
SYSTEM_ROOTS_METADATA = "SYSTEM_ROOTS"
#: The system roots when a proxy does not say (Debian's bundle, ``ca-certificates``).
DEFAULT_SYSTEM_ROOTS = "/etc/ssl/certs/ca-certificates.crt"
#: Where Linux distributions keep the system roots, as Istio's agent looks for them.
SYSTEM_ROOTS_CANDIDATES = (
    DEFAULT_SYSTEM_ROOTS,
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
)

#: Node metadata key an agent sets to register itself into a WorkloadGroup (Istio's); here
#: rather than with the WorkloadGroup rules (:mod:`pilotfish.api.networking`) so that an
#: agent reads it without loading the API's models.
AUTO_REGISTER_GROUP_METADATA = "AUTO_REGISTER_GROUP"

ProxyType = Literal["sidecar", "router"]
InterceptionMode = Literal["REDIRECT", "NONE"]


@dataclass(frozen=True)
class NodeInfo:
    """Everything the control plane knows about a proxy from its xDS node."""

    proxy_type: ProxyType
    ip: str
    pod_name: str
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    service_account: str = "default"
    workload_name: str = ""
    interception_mode: InterceptionMode = "REDIRECT"
    #: NONE mode only: loopback port of the outbound HTTP listener.
    outbound_port: int | None = None
    #: NONE mode only: app (target) port -> port the sidecar's inbound listener binds on ``ip``.
    inbound_ports: dict[int, int] = field(default_factory=dict)
    #: Routers only: Gateway server port -> port actually bound (Istio's Service targetPort;
    #: 80 -> 8080 and 443 -> 8443 by default).
    gateway_ports: dict[int, int] = field(default_factory=dict)
    #: Routers only: address gateway listeners bind.
    bind_address: str = "0.0.0.0"
    domain_suffix: str = DEFAULT_DOMAIN_SUFFIX
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    #: Anything else the agent sent (for forward compatibility).
    extra: dict[str, Any] = field(default_factory=dict)
    #: Set by the xDS server (never sent by proxies): the proxy is on a Delta xDS stream, so
    #: features that exist only on Delta (VHDS) may be generated for it. Not part of a node's
    #: identity (equality).
    delta_xds: bool = field(default=False, compare=False)

    @property
    def node_id(self) -> str:
        return (
            f"{self.proxy_type}~{self.ip}~{self.pod_name}.{self.namespace}"
            f"~{self.namespace}.svc.{self.domain_suffix}"
        )

    @property
    def admin_port(self) -> int | None:
        """The Envoy admin port the agent announced (``ADMIN_PORT``), if any."""
        raw = str(self.extra.get(ADMIN_PORT_METADATA) or "")
        return int(raw) if raw.isdigit() else None

    @property
    def system_roots(self) -> str:
        """The CA bundle of the proxy's host (``SYSTEM_ROOTS``), else Debian's."""
        return str(self.extra.get(SYSTEM_ROOTS_METADATA) or DEFAULT_SYSTEM_ROOTS)

    @property
    def cluster(self) -> str:
        app = self.labels.get("app") or self.workload_name or self.pod_name
        return f"{app}.{self.namespace}"

    @property
    def spiffe_id(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    def metadata(self) -> dict[str, Any]:
        """The bootstrap ``node.metadata`` (a JSON object; Envoy sends it back as a Struct)."""
        meta: dict[str, Any] = {
            "NAMESPACE": self.namespace,
            "LABELS": dict(self.labels),
            "SERVICE_ACCOUNT": self.service_account,
            "WORKLOAD_NAME": self.workload_name,
            "INSTANCE_IPS": self.ip,
            "INTERCEPTION_MODE": self.interception_mode,
            "DOMAIN_SUFFIX": self.domain_suffix,
            "TRUST_DOMAIN": self.trust_domain,
            "BIND_ADDRESS": self.bind_address,
        }
        if self.outbound_port is not None:
            meta["OUTBOUND_PORT"] = str(self.outbound_port)
        if self.inbound_ports:
            meta["INBOUND_PORTS"] = {str(k): str(v) for k, v in self.inbound_ports.items()}
        if self.gateway_ports:
            meta["GATEWAY_PORTS"] = {str(k): str(v) for k, v in self.gateway_ports.items()}
        meta.update(self.extra)
        return meta

    @classmethod
    def from_node(cls, node_id: str, metadata: dict[str, Any]) -> NodeInfo:
        """Parse what Envoy sent (id + metadata as a plain dict). Raises ValueError if malformed."""
        parts = node_id.split("~")
        if len(parts) != 4 or parts[0] not in ("sidecar", "router"):
            raise ValueError(f"node id {node_id!r} is not TYPE~IP~POD.NAMESPACE~DOMAIN")
        proxy_type: ProxyType = "sidecar" if parts[0] == "sidecar" else "router"
        pod, _, ns_from_id = parts[2].rpartition(".")
        namespace = str(metadata.get("NAMESPACE") or ns_from_id)
        known = {
            "NAMESPACE", "LABELS", "SERVICE_ACCOUNT", "WORKLOAD_NAME", "INSTANCE_IPS",
            "INTERCEPTION_MODE", "DOMAIN_SUFFIX", "TRUST_DOMAIN", "OUTBOUND_PORT",
            "INBOUND_PORTS", "GATEWAY_PORTS", "BIND_ADDRESS",
        }  # fmt: skip
        mode = str(metadata.get("INTERCEPTION_MODE") or "REDIRECT")
        if mode not in ("REDIRECT", "NONE"):
            raise ValueError(f"INTERCEPTION_MODE {mode!r} is not REDIRECT or NONE")
        outbound = metadata.get("OUTBOUND_PORT")
        return cls(
            proxy_type=proxy_type,
            ip=str(metadata.get("INSTANCE_IPS") or parts[1]).split(",")[0],
            pod_name=pod or parts[2],
            namespace=namespace,
            labels={str(k): str(v) for k, v in (metadata.get("LABELS") or {}).items()},
            service_account=str(metadata.get("SERVICE_ACCOUNT") or "default"),
            workload_name=str(metadata.get("WORKLOAD_NAME") or ""),
            interception_mode="NONE" if mode == "NONE" else "REDIRECT",
            outbound_port=int(outbound) if outbound not in (None, "") else None,
            inbound_ports=_int_map(metadata.get("INBOUND_PORTS")),
            gateway_ports=_int_map(metadata.get("GATEWAY_PORTS")),
            bind_address=str(metadata.get("BIND_ADDRESS") or "0.0.0.0"),
            domain_suffix=str(metadata.get("DOMAIN_SUFFIX") or DEFAULT_DOMAIN_SUFFIX),
            trust_domain=str(metadata.get("TRUST_DOMAIN") or DEFAULT_TRUST_DOMAIN),
            extra={k: v for k, v in metadata.items() if k not in known},
        )


def _int_map(raw: Any) -> dict[int, int]:
    if not raw:
        return {}
    return {int(k): int(v) for k, v in dict(raw).items()}
