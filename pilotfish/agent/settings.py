"""Settings of the sidecar agent: one frozen object the CLI fills and every agent part reads.

Nothing in :mod:`pilotfish.agent` reads the environment or global state; ``pilotfish proxy``
(or a test, or the local pod runtime) builds an :class:`AgentSettings` and passes it down.
The bootstrap renderer, the Envoy supervisor and the agent's HTTP server each take what they
need from it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pilotfish.api.mesh import ADMIN_PORT, AGENT_PORT, READINESS_PORT, XDS_PORT
from pilotfish.api.node import NodeInfo

XdsApi = Literal["delta", "sotw"]
LogLevel = Literal["trace", "debug", "info", "warning", "error", "critical", "off"]

#: Name of the static cluster that carries ADS to the control plane (Istio's name).
XDS_CLUSTER = "xds-grpc"
#: Name of the static cluster of the agent's SDS server (Istio's name).
SDS_CLUSTER = "sds-grpc"
#: Label a proxy with a workload certificate carries (Istio's injector sets it on pods); the
#: control plane uses it to pick mesh mTLS towards that workload and from that proxy.
TLS_MODE_LABEL = "security.istio.io/tlsMode"


@dataclass(frozen=True)
class XdsTls:
    """TLS towards the control plane. Files are read by Envoy itself, so they must exist.

    ``ca_file`` verifies the control plane; ``cert_file``/``key_file`` (both or neither) are the
    proxy's client certificate; ``server_name`` is sent as SNI and, when set, required as a
    DNS SAN of the control plane's certificate.
    """

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str = ""

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("xds tls: cert_file and key_file go together (both or neither)")


@dataclass(frozen=True)
class IdentitySettings:
    """The workload certificate: a token proving the identity, the CA, renewal.

    The agent makes a key pair, asks the CA (on the control plane's xDS address, over the same
    TLS as xDS) for a certificate for ``spiffe://<trust domain>/ns/<namespace>/sa/<account>``
    of its node, and serves it with the roots to Envoy over SDS on a Unix socket.
    """

    #: A workload token (``pilotfish token create``); re-read for every request.
    token_file: Path
    cert_ttl: timedelta = timedelta(hours=24)
    #: Renewal at this fraction of the lifetime, plus or minus ``jitter`` of it.
    renew_fraction: float = 0.5
    jitter: float = 0.05
    #: Where the SDS socket goes; ``None``: ``<work_dir>/sds/socket`` (or a short temporary
    #: directory when that path is too long for a Unix socket).
    socket_path: Path | None = None

    def __post_init__(self) -> None:
        if self.cert_ttl <= timedelta(0):
            raise ValueError("cert_ttl must be positive")


@dataclass(frozen=True)
class HostPort:
    """``host:port`` as typed by a user (``[::1]:15012`` for IPv6)."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> HostPort:
        host, sep, port_text = text.strip().rpartition(":")
        if not sep or not host or not port_text.isdigit():
            raise ValueError(f"address {text!r} is not host:port")
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError(f"address {text!r}: port {port} is out of range 1-65535")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return cls(host, port)

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        return self.is_ip and ipaddress.ip_address(self.host).is_loopback

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class AppMetrics:
    """The app's own Prometheus endpoint, from its pod's ``prometheus.io/port`` and
    ``prometheus.io/path`` annotations; the agent merges what it serves into
    ``/stats/prometheus`` (as Istio's pilot-agent does)."""

    port: int
    path: str = "/metrics"
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        _check_port("app metrics port", self.port)
        if not self.path.startswith("/"):
            raise ValueError(f"app metrics path {self.path!r} must start with /")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"


@dataclass(frozen=True)
class AgentSettings:
    """Everything ``pilotfish proxy`` needs to run one Envoy for one workload."""

    node: NodeInfo
    #: Where the agent writes the bootstrap and other runtime files.
    work_dir: Path
    discovery_address: HostPort = field(default_factory=lambda: HostPort("127.0.0.1", XDS_PORT))
    #: Further control-plane replicas (after ``discovery_address``): Envoy's ``xds-grpc``
    #: cluster lists them all and the agent's CA client tries them in turn.
    discovery_fallbacks: tuple[HostPort, ...] = ()
    #: ``None`` means plaintext gRPC to the control plane.
    xds_tls: XdsTls | None = None
    #: ``None``: no workload certificate (no mTLS, no SDS cluster in the bootstrap).
    identity: IdentitySettings | None = None
    xds_api: XdsApi = "delta"
    #: Envoy waits this long for the first CDS/LDS answer before starting anyway; 0 = forever.
    initial_fetch_timeout_s: float = 10.0
    xds_connect_timeout_s: float = 1.0

    admin_port: int = ADMIN_PORT
    #: Envoy's readiness listener (``GET /healthz/ready``).
    readiness_port: int = READINESS_PORT
    readiness_bind: str = "0.0.0.0"
    #: The agent's own HTTP server (health, merged metrics). ``None``: no agent server, and the
    #: readiness listener asks Envoy's admin ``/ready`` directly (see bootstrap.py).
    agent_port: int | None = AGENT_PORT
    agent_bind: str = "0.0.0.0"
    #: The app's metrics to merge into ``/stats/prometheus`` (``None``: none).
    app_metrics: AppMetrics | None = None
    #: The WorkloadGroup's ``probe`` (Istio's ``ReadinessProbe``, as YAML/JSON): the agent runs
    #: it against the app and reports health changes to the control plane (``None``: none).
    workload_probe: Mapping[str, Any] | None = None

    concurrency: int = 2
    #: Overload manager limit on downstream connections across all listeners.
    max_downstream_connections: int = 50_000
    #: SIGTERM: how long in-flight connections may take to finish before Envoy is stopped.
    drain_seconds: float = 5.0
    log_level: LogLevel = "warning"
    #: ``None``: Envoy logs to the agent's stderr.
    log_path: Path | None = None
    #: Run Envoy as this user (a dedicated proxy user for capture rules); needs root.
    envoy_user: str | None = None
    #: The CA bundle that stands for the host's system roots (TLS origination without a CA
    #: verifies with it); ``None``: the first of the usual system bundles that exists.
    system_ca_file: Path | None = None
    #: EnvoyFilter BOOTSTRAP patches that select this proxy (a JSON list of Bootstrap values,
    #: MERGEd into the bootstrap in order; ``pilotfish.api.bootstrap_patch``); ``None``: none.
    bootstrap_patches: Path | None = None

    #: Explicit mode: the workload's command, started once Envoy is ready.
    app_command: tuple[str, ...] = ()
    #: Explicit mode: also set ``HTTP_PROXY``/``http_proxy`` for the app (off by default).
    app_http_proxy_env: bool = False
    #: How long the app gets between SIGTERM and SIGKILL.
    app_stop_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("admin_port", "readiness_port"):
            _check_port(name, getattr(self, name))
        if self.agent_port is not None:
            _check_port("agent_port", self.agent_port)
        if self.concurrency < 1:
            raise ValueError(f"concurrency {self.concurrency} must be at least 1")
        if self.drain_seconds < 0:
            raise ValueError(f"drain_seconds {self.drain_seconds} must not be negative")
        if self.initial_fetch_timeout_s < 0:
            raise ValueError("initial_fetch_timeout_s must not be negative")
        if self.max_downstream_connections < 1:
            raise ValueError("max_downstream_connections must be at least 1")

    @property
    def discovery_addresses(self) -> tuple[HostPort, ...]:
        """Every control-plane replica, ``discovery_address`` first, without repeats."""
        return tuple(dict.fromkeys((self.discovery_address, *self.discovery_fallbacks)))

    @property
    def bootstrap_path(self) -> Path:
        return self.work_dir / "envoy-bootstrap.json"


def _check_port(name: str, port: int) -> None:
    if not 0 < port < 65536:
        raise ValueError(f"{name} {port} is out of range 1-65535")
