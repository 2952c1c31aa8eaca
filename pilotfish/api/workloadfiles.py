"""The files a workload on another host joins the mesh with, as ``istioctl x workload entry
configure`` writes them, and what ``pilotfish proxy --config-dir`` reads back. Pure.

The directory holds Istio's five files:

- ``cluster.env``: the agent's settings as ``KEY='value'`` lines, with Istio's names
  (``POD_NAMESPACE``, ``SERVICE_ACCOUNT``, ``ISTIO_METAJSON_LABELS``,
  ``ISTIO_META_AUTO_REGISTER_GROUP``, ``ISTIO_INBOUND_PORTS``, ``ISTIO_LOCAL_EXCLUDE_PORTS``,
  ``ISTIO_SVC_IP``, ...);
- ``mesh.yaml``: the mesh config's ``defaultConfig`` for this proxy (``discoveryAddress``,
  ``controlPlaneAuthPolicy``, the same settings as ``proxyMetadata``);
- ``root-cert.pem``: the mesh roots (verify the control plane's TLS, and peers);
- ``istio-token``: a workload token for the group's namespace and service account, bound to
  the group;
- ``hosts``: the control plane's address under the name ``discoveryAddress`` uses
  (``istiod.istio-system.svc``), for ``/etc/hosts``; ``pilotfish proxy`` reads it itself.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from pilotfish.api.mesh import AGENT_PORT, READINESS_PORT

CLUSTER_ENV = "cluster.env"
MESH_YAML = "mesh.yaml"
ROOT_CERT = "root-cert.pem"
TOKEN = "istio-token"
HOSTS = "hosts"
FILES = (CLUSTER_ENV, MESH_YAML, ROOT_CERT, TOKEN, HOSTS)

#: The name agents dial the control plane by (a DNS SAN of its xDS certificate), as Istio's.
CONTROL_PLANE_NAME = "istiod.istio-system.svc"
#: Envoy's Prometheus port in Istio.
PROMETHEUS_PORT = 15090
#: Inbound ports never captured on a host: the proxy's own, and SSH (the host must stay
#: reachable however the mesh is configured).
HOST_EXCLUDED_INBOUND_PORTS = (PROMETHEUS_PORT, READINESS_PORT, AGENT_PORT, 22)


@dataclass(frozen=True)
class WorkloadFiles:
    """What the files say (and what ``configure`` is asked to write)."""

    namespace: str
    service_account: str
    labels: dict[str, str]
    #: The WorkloadGroup to register into (``--autoregister``), or ``""``.
    auto_register_group: str
    workload_name: str
    cluster_id: str
    trust_domain: str
    #: ``HOST:PORT`` the agent dials (a name resolved through ``control_plane_ip``).
    discovery_address: str
    #: The control plane's IP, for ``hosts`` (``""``: the name resolves on its own).
    control_plane_ip: str = ""
    xds_tls: bool = True
    #: The workload's own IP (``--internalIP``); ``""``: the agent finds it.
    internal_ip: str = ""
    network: str = ""
    excluded_inbound_ports: tuple[int, ...] = HOST_EXCLUDED_INBOUND_PORTS
    extra_env: dict[str, str] = field(default_factory=dict)
    #: The WorkloadGroup's ``probe`` (mesh.yaml's ``defaultConfig.readinessProbe``), or None.
    readiness_probe: dict[str, Any] | None = None

    def cluster_env(self) -> dict[str, str]:
        env = {
            "CANONICAL_REVISION": self.labels.get("version", "latest"),
            "CANONICAL_SERVICE": self.labels.get("app", self.workload_name),
            "ISTIO_INBOUND_PORTS": "*",
            "ISTIO_LOCAL_EXCLUDE_PORTS": ",".join(str(p) for p in self.excluded_inbound_ports),
            "ISTIO_METAJSON_LABELS": json.dumps(self.labels, sort_keys=True, separators=(",", ":")),
            "ISTIO_META_CLUSTER_ID": self.cluster_id,
            "ISTIO_META_NETWORK": self.network,
            "ISTIO_META_WORKLOAD_NAME": self.workload_name,
            "ISTIO_NAMESPACE": self.namespace,
            "ISTIO_SERVICE": f"{self.workload_name}.{self.namespace}",
            "ISTIO_SERVICE_CIDR": "*",
            "POD_NAMESPACE": self.namespace,
            "SERVICE_ACCOUNT": self.service_account,
            "TRUST_DOMAIN": self.trust_domain,
        }
        if self.auto_register_group:
            env["ISTIO_META_AUTO_REGISTER_GROUP"] = self.auto_register_group
        if self.internal_ip:
            env["ISTIO_SVC_IP"] = self.internal_ip
        env.update(self.extra_env)
        return dict(sorted(env.items()))


def render_cluster_env(files: WorkloadFiles) -> str:
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in files.cluster_env().items())


def render_mesh_yaml(files: WorkloadFiles) -> str:
    config: dict[str, Any] = {
        "defaultConfig": {
            "discoveryAddress": files.discovery_address,
            "controlPlaneAuthPolicy": "MUTUAL_TLS" if files.xds_tls else "NONE",
            "proxyMetadata": files.cluster_env(),
        }
    }
    if files.readiness_probe:
        # As istioctl: the group's probe becomes the proxy config's readinessProbe.
        config["defaultConfig"]["readinessProbe"] = files.readiness_probe
    return yaml.safe_dump(config, sort_keys=True)


def render_hosts(files: WorkloadFiles) -> str:
    host = files.discovery_address.rpartition(":")[0]
    if not files.control_plane_ip or host == files.control_plane_ip:
        return ""
    return f"{files.control_plane_ip} {host}\n"


def parse_cluster_env(text: str) -> dict[str, str]:
    """``KEY=value`` lines (shell quoting, ``#`` comments) as a dict."""
    env: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, raw = stripped.partition("=")
        if not sep or not key.replace("_", "").isalnum():
            raise ValueError(f"{CLUSTER_ENV} line {number}: not KEY=VALUE: {line!r}")
        try:
            words = shlex.split(raw)
        except ValueError as exc:
            raise ValueError(f"{CLUSTER_ENV} line {number}: {exc}") from None
        env[key] = " ".join(words)
    return env


def parse_hosts(text: str) -> dict[str, str]:
    """``/etc/hosts`` lines as name -> address."""
    names: dict[str, str] = {}
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        for name in words[1:]:
            names.setdefault(name, words[0])
    return names


@dataclass(frozen=True)
class ProxyOptions:
    """``pilotfish proxy`` options a configured directory gives (None: not given)."""

    namespace: str
    service_account: str
    labels: dict[str, str]
    workload_group: str | None
    workload_name: str
    ip: str | None
    #: ``HOST:PORT`` with the host resolved through ``hosts``.
    discovery_address: str
    #: The name the control plane's certificate is checked for (``""``: the address).
    xds_server_name: str
    plaintext: bool
    excluded_inbound_ports: tuple[int, ...]
    cluster_id: str


def proxy_options(
    env: Mapping[str, str], mesh: Mapping[str, Any], hosts: Mapping[str, str]
) -> ProxyOptions:
    """What ``cluster.env``, ``mesh.yaml`` and ``hosts`` say the proxy runs with.
    ValueError names the file and the setting that is missing or wrong."""
    default = mesh.get("defaultConfig") if isinstance(mesh, Mapping) else None
    if not isinstance(default, Mapping) or not default.get("discoveryAddress"):
        raise ValueError(f"{MESH_YAML}: defaultConfig.discoveryAddress is required")
    address = str(default["discoveryAddress"])
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(
            f"{MESH_YAML}: defaultConfig.discoveryAddress {address!r} is not HOST:PORT"
        )
    policy = str(default.get("controlPlaneAuthPolicy") or "MUTUAL_TLS")
    if policy not in ("MUTUAL_TLS", "NONE"):
        raise ValueError(
            f"{MESH_YAML}: defaultConfig.controlPlaneAuthPolicy {policy!r} is not "
            "MUTUAL_TLS or NONE"
        )
    meta = default.get("proxyMetadata") or {}
    merged = {**{str(k): str(v) for k, v in meta.items()}, **env}
    namespace = merged.get("POD_NAMESPACE") or merged.get("ISTIO_NAMESPACE") or ""
    if not namespace:
        raise ValueError(f"{CLUSTER_ENV}: POD_NAMESPACE is required")
    try:
        labels = json.loads(merged.get("ISTIO_METAJSON_LABELS") or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"{CLUSTER_ENV}: ISTIO_METAJSON_LABELS is not JSON: {exc}") from None
    if not isinstance(labels, dict):
        raise ValueError(f"{CLUSTER_ENV}: ISTIO_METAJSON_LABELS must be a JSON object")
    excluded: list[int] = []
    for part in (merged.get("ISTIO_LOCAL_EXCLUDE_PORTS") or "").split(","):
        if part.strip():
            if not part.strip().isdigit():
                raise ValueError(
                    f"{CLUSTER_ENV}: ISTIO_LOCAL_EXCLUDE_PORTS: {part!r} is not a port"
                )
            excluded.append(int(part))
    inbound = merged.get("ISTIO_INBOUND_PORTS", "*")
    if inbound not in ("*", ""):
        raise ValueError(
            f"{CLUSTER_ENV}: ISTIO_INBOUND_PORTS {inbound!r}: only '*' (capture every inbound "
            "port) is supported"
        )
    resolved = hosts.get(host, "")
    return ProxyOptions(
        namespace=namespace,
        service_account=merged.get("SERVICE_ACCOUNT") or "default",
        labels={str(k): str(v) for k, v in labels.items()},
        workload_group=merged.get("ISTIO_META_AUTO_REGISTER_GROUP") or None,
        workload_name=merged.get("ISTIO_META_WORKLOAD_NAME", ""),
        ip=merged.get("ISTIO_SVC_IP") or None,
        discovery_address=f"{resolved}:{port}" if resolved else address,
        xds_server_name=host if resolved else "",
        plaintext=policy == "NONE",
        excluded_inbound_ports=tuple(excluded),
        cluster_id=merged.get("ISTIO_META_CLUSTER_ID", ""),
    )


__all__ = [
    "CLUSTER_ENV",
    "CONTROL_PLANE_NAME",
    "FILES",
    "HOSTS",
    "HOST_EXCLUDED_INBOUND_PORTS",
    "MESH_YAML",
    "ROOT_CERT",
    "TOKEN",
    "ProxyOptions",
    "WorkloadFiles",
    "parse_cluster_env",
    "parse_hosts",
    "proxy_options",
    "render_cluster_env",
    "render_hosts",
    "render_mesh_yaml",
]
