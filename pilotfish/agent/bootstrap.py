"""Envoy's bootstrap for a Pilotfish proxy: a pure function of :class:`AgentSettings`.

What the bootstrap holds (everything else arrives over ADS):

- ``node``: id, cluster and metadata rendered from :class:`~pilotfish.api.node.NodeInfo`
  (the control plane parses them back with ``NodeInfo.from_node``), plus ``ADMIN_PORT`` and
  ``SYSTEM_ROOTS`` (the host's CA bundle: the one thing read from the host, which of the usual
  bundle files exists, unless ``system_ca_file`` names one).
- ``admin`` on ``127.0.0.1:<admin_port>`` only.
- ``dynamic_resources``: ADS (Delta by default, SotW selectable) over the static ``xds-grpc``
  cluster; CDS and LDS come through ADS with an ``initial_fetch_timeout``.
- ``static_resources``: the ``xds-grpc`` cluster (HTTP/2, keepalive, optional TLS that
  verifies the control plane's chain with ``ca_file`` and its name: ``server_name`` as a DNS
  SAN, else the discovery address as an IP or DNS SAN, as gRPC clients check it), with a
  workload identity the ``sds-grpc`` cluster (HTTP/2 to the agent's SDS Unix socket, where
  Envoy gets ``default`` and ``ROOTCA``), and the readiness listener on
  ``<readiness_bind>:<readiness_port>`` answering ``GET /healthz/ready``.

Readiness, and why it goes through the agent. Envoy starts no listener (the readiness one
included) until its initial config is in, so before that the readiness port refuses
connections. But when ``initial_fetch_timeout`` expires without an answer from the control
plane, Envoy finishes initializing anyway: its admin ``/ready`` turns ``LIVE`` and listeners
start, with no cluster or listener from the control plane. Admin ``/ready`` alone would then
claim a proxy without any config is ready. So, as in Istio, the readiness listener routes
``/healthz/ready`` to the agent (``agent_port``), which answers 200 only when admin ``/ready``
is ``LIVE`` and CDS and LDS have each been received at least once (see ``admin.py``). Without
an agent (``agent_port=None``) the route goes to admin ``/ready`` through a static cluster with
a prefix rewrite; that is honest only with ``initial_fetch_timeout_s=0`` (wait forever).
"""

from __future__ import annotations

import json
import os
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import yaml

from pilotfish.agent.settings import SDS_CLUSTER, XDS_CLUSTER, AgentSettings, HostPort, XdsTls
from pilotfish.api.node import ADMIN_PORT_METADATA, SYSTEM_ROOTS_CANDIDATES, SYSTEM_ROOTS_METADATA
from pilotfish.api.peer import HISTOGRAM_BUCKETS
from pilotfish.api.typeurls import type_url
from pilotfish.identity.sds_protocol import ROOT_SECRET

#: Static clusters the readiness listener routes to.
ADMIN_CLUSTER = "pilotfish-admin"
AGENT_CLUSTER = "pilotfish-agent"
#: ``stat_prefix`` of the readiness listener; the drain logic ignores its connections.
READINESS_STAT_PREFIX = "readiness"
READINESS_PATH = "/healthz/ready"

_HCM = type_url("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager")
_ROUTER = type_url("envoy.extensions.filters.http.router.v3.Router")
_HTTP_OPTIONS = type_url("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
_UPSTREAM_TLS = type_url("envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext")
_DOWNSTREAM_CONNECTIONS = type_url(
    "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig"
)


def render_bootstrap(
    settings: AgentSettings, sds_socket: Path | None = None, xds_token: str = ""
) -> dict[str, Any]:
    """The bootstrap as a JSON-able dict (Envoy's proto3 JSON field names); with
    ``sds_socket``, the ``sds-grpc`` cluster to the agent's SDS server on that socket; with
    ``xds_token``, ``authorization: Bearer <token>`` on the ADS stream (a workload registering
    into a WorkloadGroup proves it may: the file then holds a secret, see
    :func:`write_bootstrap`)."""
    node = settings.node
    api_type = "DELTA_GRPC" if settings.xds_api == "delta" else "GRPC"
    ads_source = {
        "ads": {},
        "resource_api_version": "V3",
        "initial_fetch_timeout": duration(settings.initial_fetch_timeout_s),
    }
    clusters = [
        xds_cluster(settings, sds_roots=sds_socket is not None),
        readiness_cluster(settings),
    ]
    if sds_socket is not None:
        # First: the xDS cluster takes its roots from it.
        clusters.insert(0, sds_cluster(sds_socket))
    return {
        "node": {
            "id": node.node_id,
            "cluster": node.cluster,
            # ADMIN_PORT: where this Envoy's admin listens on 127.0.0.1 (of the proxy's
            # network namespace), so that `pilotfish proxy-config` can find it.
            # SYSTEM_ROOTS: the host's CA bundle, for TLS origination without a CA.
            "metadata": {
                **node.metadata(),
                ADMIN_PORT_METADATA: str(settings.admin_port),
                **_system_roots(settings),
            },
        },
        "admin": {"address": socket_address("127.0.0.1", settings.admin_port)},
        "dynamic_resources": {
            "ads_config": {
                "api_type": api_type,
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [
                    {
                        **(
                            {
                                "initial_metadata": [
                                    {"key": "authorization", "value": f"Bearer {xds_token}"}
                                ]
                            }
                            if xds_token
                            else {}
                        ),
                        "envoy_grpc": {
                            "cluster_name": XDS_CLUSTER,
                            # Envoy's default (0.5 s doubling to 30 s) can leave a proxy
                            # waiting seconds after a restarted control plane answers again;
                            # jittered retries at most 1 s apart resync within about 1 s.
                            "retry_policy": {
                                "retry_back_off": {
                                    "base_interval": "0.25s",
                                    "max_interval": "1s",
                                }
                            },
                        },
                    }
                ],
            },
            "cds_config": dict(ads_source),
            "lds_config": dict(ads_source),
        },
        "static_resources": {
            "clusters": clusters,
            "listeners": [readiness_listener(settings)],
        },
        "layered_runtime": {
            "layers": [
                {
                    "name": "defaults",
                    "static_layer": {"re2.max_program_size.error_level": 32768},
                },
                {"name": "admin", "admin_layer": {}},
            ]
        },
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": _DOWNSTREAM_CONNECTIONS,
                        "max_active_downstream_connections": settings.max_downstream_connections,
                    },
                }
            ]
        },
        "stats_config": {
            "use_all_default_tags": True,
            # Istio's buckets for its standard histograms (the stats access logger's).
            "histogram_bucket_settings": [
                {"match": {"prefix": name}, "buckets": list(buckets)}
                for name, buckets in HISTOGRAM_BUCKETS.items()
            ],
        },
        "stats_flush_interval": "5s",
    }


def _system_roots(settings: AgentSettings) -> dict[str, str]:
    """``SYSTEM_ROOTS``: ``--system-ca-file``, else the first system bundle that exists (none
    found: the control plane assumes Debian's, and Envoy refuses clusters that need it)."""
    if settings.system_ca_file is not None:
        return {SYSTEM_ROOTS_METADATA: str(settings.system_ca_file)}
    for candidate in SYSTEM_ROOTS_CANDIDATES:
        if Path(candidate).is_file():
            return {SYSTEM_ROOTS_METADATA: candidate}
    return {}


def patched(bootstrap: dict[str, Any], patches_file: Path | None) -> dict[str, Any]:
    """``bootstrap`` with the EnvoyFilter BOOTSTRAP patches in ``patches_file`` merged in (a
    JSON list of Bootstrap values, as Istio merges them; see ``api.bootstrap_patch``). Without
    a file, ``bootstrap`` itself: a proxy no such patch selects pays nothing for them.
    Raises ValueError naming the file when it cannot be read or a patch is not a Bootstrap."""
    if patches_file is None:
        return bootstrap
    from pilotfish.api.bootstrap_patch import apply_bootstrap_patches
    from pilotfish.api.envoyvalue import PatchValueError

    try:
        patches = json.loads(patches_file.read_text())
        if not isinstance(patches, list) or not all(isinstance(p, dict) for p in patches):
            raise ValueError("not a JSON list of Bootstrap objects")
        return apply_bootstrap_patches(bootstrap, patches)
    except (OSError, ValueError, PatchValueError) as exc:
        raise ValueError(f"bootstrap patches {patches_file}: {exc}") from exc


def write_bootstrap(
    bootstrap: dict[str, Any], path: Path, private_to: tuple[int | None, int | None] | None = None
) -> Path:
    """Write ``bootstrap`` atomically: YAML for ``.yaml``/``.yml``, else JSON.

    Envoy picks the format from the suffix (``.json``, ``.yaml``). ``private_to``: the file
    holds a secret; readable only by its owner and, when given, that ``(uid, gid)`` (Envoy's
    user), mode 0640 (0600 without a group).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".yaml", ".yml"):
        text = yaml.safe_dump(bootstrap, sort_keys=True)
    else:
        text = json.dumps(bootstrap, indent=2, sort_keys=True) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    mode = 0o644
    if private_to is not None:
        mode = 0o640 if private_to[1] is not None else 0o600
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        if private_to is not None and private_to[1] is not None and os.geteuid() == 0:
            os.fchown(f.fileno(), -1, private_to[1])
        os.fchmod(f.fileno(), mode)
        f.write(text)
    tmp.replace(path)
    return path


def xds_cluster(settings: AgentSettings, sds_roots: bool = False) -> dict[str, Any]:
    """The static cluster that carries ADS: HTTP/2 with keepalive, optional TLS.

    With several control-plane replicas every one is an endpoint: when the ADS stream breaks
    (a replica dies, or closes the connection at its maximum age), Envoy reconnects with its
    own jittered backoff and the load balancer picks a replica; a replica that refuses
    connections is ejected (outlier detection on local-origin failures) so the next attempt
    goes to one that answers.
    """
    addresses = settings.discovery_addresses
    all_ip = all(a.is_ip for a in addresses)
    cluster: dict[str, Any] = {
        "name": XDS_CLUSTER,
        "type": "STATIC" if all_ip else "STRICT_DNS",
        "connect_timeout": duration(settings.xds_connect_timeout_s),
        "load_assignment": load_assignment(XDS_CLUSTER, *addresses),
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _HTTP_OPTIONS,
                "explicit_http_config": {
                    "http2_protocol_options": {
                        "connection_keepalive": {"interval": "30s", "timeout": "10s"}
                    }
                },
            }
        },
        "upstream_connection_options": {
            "tcp_keepalive": {"keepalive_time": 300, "keepalive_interval": 30}
        },
        # The ADS stream is long-lived and must never be refused by default circuit breakers.
        "circuit_breakers": {
            "thresholds": [
                {
                    "priority": priority,
                    "max_connections": 100000,
                    "max_pending_requests": 100000,
                    "max_requests": 100000,
                }
                for priority in ("DEFAULT", "HIGH")
            ]
        },
    }
    if len(addresses) > 1:
        # A replica that refused a connection is set aside 1 s (times the ejections in a row,
        # at most 5 s), and back on the next 1 s sweep: with Envoy's 10 s default sweep and no
        # cap, a replica restarted after a crash stayed aside 5-20 s, and when the other one
        # died meanwhile Envoy kept dialling the dead one until then (bench/replicas.py
        # measured 3.4-17.5 s to reconnect in those rounds, 0.2-0.3 s otherwise).
        cluster["outlier_detection"] = {
            "split_external_local_origin_errors": True,
            "consecutive_local_origin_failure": 1,
            "interval": "1s",
            "base_ejection_time": "1s",
            "max_ejection_time": "5s",
            "max_ejection_percent": 100 * (len(addresses) - 1) // len(addresses),
        }
    if not all_ip:
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    if settings.xds_tls is not None:
        cluster["transport_socket"] = upstream_tls(
            settings.xds_tls, *addresses, sds_roots=sds_roots
        )
    return cluster


def sds_cluster(socket_path: Path) -> dict[str, Any]:
    """``sds-grpc``: HTTP/2 over the agent's Unix socket."""
    endpoint = {"endpoint": {"address": {"pipe": {"path": str(socket_path)}}}}
    return {
        "name": SDS_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": SDS_CLUSTER,
            "endpoints": [{"lb_endpoints": [endpoint]}],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _HTTP_OPTIONS,
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
    }


def upstream_tls(tls: XdsTls, *addresses: HostPort, sds_roots: bool = False) -> dict[str, Any]:
    """``envoy.transport_sockets.tls`` towards the control plane at ``addresses``.

    The certificate must chain to ``ca_file`` and name ``server_name`` (a DNS SAN) or, without
    one, one of the ``addresses``' hosts (an IP SAN for an IP, else a DNS SAN): a workload
    certificate from the same mesh CA (SPIFFE URI SANs only) does not pass for the control
    plane. With ``sds_roots`` (an agent with a workload identity) the roots are the mesh's
    trust bundle the agent serves as ``ROOTCA`` instead of the file, so they follow a root
    rotation (the control plane's certificate moves to the new root when it is activated).
    """
    validation: dict[str, Any] = {}
    if not sds_roots:
        validation["trusted_ca"] = {"filename": str(tls.ca_file)}
    if tls.server_name:
        validation["match_typed_subject_alt_names"] = [
            {"san_type": "DNS", "matcher": {"exact": tls.server_name}}
        ]
    elif addresses:
        sans: list[dict[str, Any]] = []
        for address in addresses:
            if address.is_ip:  # as Envoy prints IP SANs: the canonical form
                host = str(ip_address(address.host))
                san = {"san_type": "IP_ADDRESS", "matcher": {"exact": host}}
            else:
                san = {"san_type": "DNS", "matcher": {"exact": address.host}}
            if san not in sans:
                sans.append(san)
        validation["match_typed_subject_alt_names"] = sans
    common: dict[str, Any] = {
        "alpn_protocols": ["h2"],
        "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
    }
    if sds_roots:
        common["combined_validation_context"] = {
            "default_validation_context": validation,
            "validation_context_sds_secret_config": {
                "name": ROOT_SECRET,
                "sds_config": {
                    "api_config_source": {
                        "api_type": "GRPC",
                        "transport_api_version": "V3",
                        "grpc_services": [
                            {
                                "envoy_grpc": {
                                    "cluster_name": SDS_CLUSTER,
                                    # Envoy starts alongside the agent's SDS server: when it
                                    # asks first, it asks again within 50 ms (Envoy's default
                                    # backoff waits up to 0.5 s).
                                    "retry_policy": {
                                        "retry_back_off": {
                                            "base_interval": "0.05s",
                                            "max_interval": "1s",
                                        }
                                    },
                                }
                            }
                        ],
                    },
                    "resource_api_version": "V3",
                },
            },
        }
    else:
        common["validation_context"] = validation
    if tls.cert_file is not None and tls.key_file is not None:
        common["tls_certificates"] = [
            {
                "certificate_chain": {"filename": str(tls.cert_file)},
                "private_key": {"filename": str(tls.key_file)},
            }
        ]
    context: dict[str, Any] = {"@type": _UPSTREAM_TLS, "common_tls_context": common}
    if tls.server_name:
        context["sni"] = tls.server_name
    return {"name": "envoy.transport_sockets.tls", "typed_config": context}


def readiness_cluster(settings: AgentSettings) -> dict[str, Any]:
    """Where ``/healthz/ready`` is answered: the agent, or admin ``/ready`` without one."""
    if settings.agent_port is not None:
        name, port = AGENT_CLUSTER, settings.agent_port
    else:
        name, port = ADMIN_CLUSTER, settings.admin_port
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": load_assignment(name, HostPort("127.0.0.1", port)),
    }


def readiness_listener(settings: AgentSettings) -> dict[str, Any]:
    """``GET /healthz/ready`` on the readiness port; every other path is a 404."""
    if settings.agent_port is not None:
        ready_route: dict[str, Any] = {"cluster": AGENT_CLUSTER, "timeout": "2s"}
    else:
        ready_route = {"cluster": ADMIN_CLUSTER, "timeout": "2s", "prefix_rewrite": "/ready"}
    route_config = {
        "name": "readiness",
        "virtual_hosts": [
            {
                "name": "readiness",
                "domains": ["*"],
                "routes": [
                    {
                        "match": {"path": READINESS_PATH, "headers": [_method_is("GET")]},
                        "route": ready_route,
                    },
                    {
                        "match": {"prefix": "/"},
                        "direct_response": {
                            "status": 404,
                            "body": {"inline_string": f"only GET {READINESS_PATH} here\n"},
                        },
                    },
                ],
            }
        ],
    }
    hcm = {
        "@type": _HCM,
        "stat_prefix": READINESS_STAT_PREFIX,
        "codec_type": "AUTO",
        "route_config": route_config,
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}}],
    }
    return {
        "name": "readiness",
        "stat_prefix": READINESS_STAT_PREFIX,
        "address": socket_address(settings.readiness_bind, settings.readiness_port),
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }


def socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def load_assignment(cluster_name: str, *addresses: HostPort) -> dict[str, Any]:
    endpoints = [{"endpoint": {"address": socket_address(a.host, a.port)}} for a in addresses]
    return {"cluster_name": cluster_name, "endpoints": [{"lb_endpoints": endpoints}]}


def duration(seconds: float) -> str:
    """A protobuf JSON Duration (``"10s"``, ``"0.250s"``)."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:.3f}s"


def _method_is(method: str) -> dict[str, Any]:
    return {"name": ":method", "string_match": {"exact": method}}
