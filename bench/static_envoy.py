"""Envoys with static bootstraps for the data-plane benchmark: a ``direct_response`` backend
and minimal forwarding proxies (listener -> router -> one static HTTP/1.1 cluster), optionally
with the features Pilotfish's generated sidecars add, so a difference can be attributed, and
optionally with mutual TLS between them from certificate files (:func:`static_certificates`)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from benchlib import Processes

from pilotfish.agent.envoy_binary import envoy_binary
from pilotfish.identity import pki
from pilotfish.identity.ca import CASettings, MeshCA
from pilotfish.identity.spiffe import SpiffeId

_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."


@dataclass(frozen=True)
class TlsFiles:
    """One side's certificate chain and key, the roots it trusts and the peer's SPIFFE URI."""

    cert: Path
    key: Path
    roots: Path
    peer_uri: str


def static_certificates(
    directory: Path, trust_domain: str = "cluster.local"
) -> dict[str, TlsFiles]:
    """A CA of its own in ``directory`` and a workload certificate (Pilotfish's key type and
    SPIFFE URI form, as the mesh CA issues them) for a ``client`` and a ``server``."""
    ca = MeshCA.load_or_create_self_signed(CASettings(directory / "ca", trust_domain))
    roots = directory / "roots.pem"
    roots.write_text(ca.trust_bundle())
    ids = {
        side: SpiffeId(trust_domain, "default", f"bench-{side}") for side in ("client", "server")
    }
    files = {}
    for side, identity in ids.items():
        key = pki.generate_private_key()
        signed = ca.sign_workload(pki.build_csr(key, identity), identity)
        cert, key_file = directory / f"{side}.pem", directory / f"{side}-key.pem"
        cert.write_text(signed.cert_chain_pem)
        key_file.write_text(pki.private_key_pem(key))
        key_file.chmod(0o600)
        peer = ids["server" if side == "client" else "client"]
        files[side] = TlsFiles(cert, key_file, roots, peer.uri)
    return files


def _common_tls(tls: TlsFiles, check_peer: bool) -> dict[str, Any]:
    validation: dict[str, Any] = {"trusted_ca": {"filename": str(tls.roots)}}
    if check_peer:
        validation["match_typed_subject_alt_names"] = [
            {"san_type": "URI", "matcher": {"exact": tls.peer_uri}}
        ]
    return {
        "tls_certificates": [
            {
                "certificate_chain": {"filename": str(tls.cert)},
                "private_key": {"filename": str(tls.key)},
            }
        ],
        "validation_context": validation,
    }


def _upstream_tls(tls: TlsFiles) -> dict[str, Any]:
    """The client's side: present its certificate, verify the server's and its URI. TLS 1.3,
    as between sidecars (Envoy's client default would stop at 1.2)."""
    common = _common_tls(tls, check_peer=True)
    common["tls_params"] = {
        "tls_minimum_protocol_version": "TLSv1_3",
        "tls_maximum_protocol_version": "TLSv1_3",
    }
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {"@type": _TLS + "UpstreamTlsContext", "common_tls_context": common},
    }


def _downstream_tls(tls: TlsFiles) -> dict[str, Any]:
    """The server's side: require a client certificate from the mesh's CA."""
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": _TLS + "DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": _common_tls(tls, check_peer=False),
        },
    }


_ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}


def _address(ip: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": ip, "port_value": port}}


#: What the generated sidecars add to a minimal forwarding Envoy (Istio's defaults): the fault
#: and CORS filters, path normalization, a retry policy on outbound routes, least-request load
#: balancing and circuit breakers with track_remaining.
_FEATURE_FILTERS = [
    {
        "name": "envoy.filters.http.fault",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
        },
    },
    {
        "name": "envoy.filters.http.cors",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"},
    },
]
_FEATURE_RETRY = {
    "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
    "num_retries": 2,
    "retry_host_predicate": [
        {
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3"
                ".PreviousHostsPredicate"
            },
        }
    ],
    "host_selection_retry_max_attempts": 5,
    "retriable_status_codes": [503],
}
_FEATURE_CIRCUIT_BREAKERS = {
    "thresholds": [
        {
            "max_connections": 4294967295,
            "max_pending_requests": 4294967295,
            "max_requests": 4294967295,
            "max_retries": 4294967295,
            "track_remaining": True,
        }
    ]
}


def _listener(
    ip: str,
    port: int,
    route: dict[str, Any],
    features: bool = False,
    tls: TlsFiles | None = None,
) -> dict[str, Any]:
    hcm: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager"
        ".v3.HttpConnectionManager",
        "stat_prefix": "bench",
        "codec_type": "HTTP1",
        "route_config": {
            "name": "bench",
            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}],
        },
        "http_filters": [*(_FEATURE_FILTERS if features else []), _ROUTER],
    }
    if features:
        hcm["normalize_path"] = True
    chain: dict[str, Any] = {
        "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]
    }
    if tls is not None:
        chain["transport_socket"] = _downstream_tls(tls)
    return {"name": f"listener_{port}", "address": _address(ip, port), "filter_chains": [chain]}


def _bootstrap(
    admin_port: int, listener: dict[str, Any], clusters: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "node": {"id": listener["name"], "cluster": "bench"},
        "admin": {"address": _address("127.0.0.1", admin_port)},
        "static_resources": {"listeners": [listener], "clusters": clusters},
    }


def backend_bootstrap(ip: str, port: int, admin_port: int) -> dict[str, Any]:
    """An Envoy that answers every request itself: 200 with body ``ok``."""
    route = {
        "match": {"prefix": "/"},
        "direct_response": {"status": 200, "body": {"inline_string": "ok"}},
    }
    return _bootstrap(admin_port, _listener(ip, port, route), [])


def proxy_bootstrap(
    listen_ip: str,
    listen_port: int,
    upstream_ip: str,
    upstream_port: int,
    admin_port: int,
    *,
    features: bool = False,
    retries: bool = False,
    listen_tls: TlsFiles | None = None,
    upstream_tls: TlsFiles | None = None,
) -> dict[str, Any]:
    """A minimal forwarding Envoy: listener -> router -> one static HTTP/1.1 cluster.

    ``features`` adds what the generated sidecars carry besides (fault and CORS filters, path
    normalization, least-request balancing, circuit breakers); ``retries`` adds the outbound
    retry policy. ``listen_tls`` makes the listener require mutual TLS; ``upstream_tls`` makes
    the cluster speak it (certificates from files, the peer's URI checked)."""
    cluster: dict[str, Any] = {
        "name": "upstream",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "upstream",
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": _address(upstream_ip, upstream_port)}}]}
            ],
        },
    }
    if upstream_tls is not None:
        cluster["transport_socket"] = _upstream_tls(upstream_tls)
    action: dict[str, Any] = {"cluster": "upstream"}
    if features:
        cluster["lb_policy"] = "LEAST_REQUEST"
        cluster["circuit_breakers"] = _FEATURE_CIRCUIT_BREAKERS
        action["timeout"] = "0s"
    if retries:
        action["retry_policy"] = _FEATURE_RETRY
    route = {"match": {"prefix": "/"}, "route": action}
    listener = _listener(listen_ip, listen_port, route, features, listen_tls)
    return _bootstrap(admin_port, listener, [cluster])


@dataclass
class StaticEnvoy:
    name: str
    admin_port: int
    proc: subprocess.Popen[bytes]

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise SystemExit(f"Envoy {self.name} exited (see {self.name}.log in the work dir)")
        r = httpx.get(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1)
        return r.status_code == 200


def start_envoy(
    procs: Processes, name: str, bootstrap: dict[str, Any], cpus: set[int] | None
) -> StaticEnvoy:
    path = procs.workdir / f"{name}.yaml"
    path.write_text(json.dumps(bootstrap, indent=1))  # JSON is YAML
    cmd = [
        str(envoy_binary()),
        "-c",
        str(path),
        "--concurrency",
        "1",
        "--use-dynamic-base-id",
        "--log-level",
        "warning",
    ]
    proc = procs.start(cmd, f"{name}.log", cpus=cpus)
    return StaticEnvoy(name, bootstrap["admin"]["address"]["socket_address"]["port_value"], proc)
