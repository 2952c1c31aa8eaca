"""Envoys with static bootstraps for the data-plane benchmark: a ``direct_response`` backend
and minimal forwarding proxies (listener -> router -> one static HTTP/1.1 cluster), optionally
with the features Pilotfish's generated sidecars add, so a difference can be attributed."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Any

import httpx
from benchlib import Processes

from pilotfish.agent.envoy_binary import envoy_binary

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


def _listener(ip: str, port: int, route: dict[str, Any], features: bool = False) -> dict[str, Any]:
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
    return {
        "name": f"listener_{port}",
        "address": _address(ip, port),
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }


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
) -> dict[str, Any]:
    """A minimal forwarding Envoy: listener -> router -> one static HTTP/1.1 cluster.

    ``features`` adds what the generated sidecars carry besides (fault and CORS filters, path
    normalization, least-request balancing, circuit breakers); ``retries`` adds the outbound
    retry policy."""
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
    action: dict[str, Any] = {"cluster": "upstream"}
    if features:
        cluster["lb_policy"] = "LEAST_REQUEST"
        cluster["circuit_breakers"] = _FEATURE_CIRCUIT_BREAKERS
        action["timeout"] = "0s"
    if retries:
        action["retry_policy"] = _FEATURE_RETRY
    route = {"match": {"prefix": "/"}, "route": action}
    return _bootstrap(admin_port, _listener(listen_ip, listen_port, route, features), [cluster])


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
