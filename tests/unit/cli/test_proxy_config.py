"""`pilotfish proxy-config`'s pure parts: reading Envoy's config dump, istioctl's filters,
certificates (identity, serial, validity, never a key) and log levels."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import click
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pilotfish.cli.proxy_config import (
    cluster_rows,
    endpoint_rows,
    endpoints_from_clusters,
    listener_rows,
    logging_queries,
    parse_loggers,
    resources_from_dump,
    route_rows,
    secret_items,
    secret_rows,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
T = "type.googleapis.com/envoy.admin.v3."


def _cert(spiffe: str, serial: int) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cluster.local")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW - timedelta(hours=1))
        .not_valid_after(NOW + timedelta(hours=23))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe)]), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _dump() -> dict:
    chain = base64.b64encode(_cert("spiffe://cluster.local/ns/default/sa/bookinfo", 0xABC))
    return {
        "configs": [
            {"@type": T + "BootstrapConfigDump", "bootstrap": {"node": {"id": "sidecar~x"}}},
            {
                "@type": T + "ClustersConfigDump",
                "static_clusters": [{"cluster": {"name": "xds-grpc", "type": "STRICT_DNS"}}],
                "dynamic_active_clusters": [
                    {
                        "cluster": {
                            "name": "outbound|9080|v1|reviews.default.svc.cluster.local",
                            "type": "EDS",
                        }
                    },
                    {
                        "cluster": {
                            "name": "outbound|9080||ratings.default.svc.cluster.local",
                            "type": "EDS",
                        }
                    },
                    {"cluster": {"name": "inbound|9080||", "type": "STATIC"}},
                ],
            },
            {
                "@type": T + "ListenersConfigDump",
                "dynamic_listeners": [
                    {
                        "active_state": {
                            "listener": {
                                "name": "virtualInbound",
                                "address": {
                                    "socket_address": {"address": "0.0.0.0", "port_value": 15006}
                                },
                                "filter_chains": [
                                    {"filter_chain_match": {"transport_protocol": "tls"}}
                                ],
                            }
                        }
                    },
                    {
                        "active_state": {
                            "listener": {
                                "name": "virtualOutbound",
                                "address": {
                                    "socket_address": {"address": "0.0.0.0", "port_value": 15001}
                                },
                            }
                        }
                    },
                ],
            },
            {
                "@type": T + "RoutesConfigDump",
                "dynamic_route_configs": [
                    {
                        "route_config": {
                            "name": "9080",
                            "virtual_hosts": [
                                {
                                    "name": "reviews:9080",
                                    "domains": ["reviews"],
                                    "routes": [
                                        {
                                            "match": {"prefix": "/"},
                                            "route": {"cluster": "outbound|9080|v1|r"},
                                        }
                                    ],
                                }
                            ],
                        }
                    },
                    {"route_config": {"name": "8080", "virtual_hosts": []}},
                ],
            },
            {
                "@type": T + "SecretsConfigDump",
                "dynamic_active_secrets": [
                    {
                        "name": "default",
                        "secret": {
                            "name": "default",
                            "tls_certificate": {
                                "certificate_chain": {"inline_bytes": chain.decode()},
                                "private_key": {
                                    "inline_bytes": base64.b64encode(b"[redacted]").decode()
                                },
                            },
                        },
                    },
                ],
            },
        ]
    }


def test_resources_come_from_the_config_dump() -> None:
    res = resources_from_dump(_dump())
    assert [c["name"] for c in res["clusters"]][:2] == [
        "xds-grpc", "outbound|9080|v1|reviews.default.svc.cluster.local",
    ]  # fmt: skip
    assert [lst["name"] for lst in res["listeners"]] == ["virtualInbound", "virtualOutbound"]
    assert [r["name"] for r in res["routes"]] == ["9080", "8080"]
    assert "private_key" not in res["secrets"][0]["secret"]["tls_certificate"]


def test_istioctl_filters() -> None:
    clusters = resources_from_dump(_dump())["clusters"]
    assert [r[:4] for r in cluster_rows(clusters, fqdn="reviews")[1:]] == [
        ["reviews.default.svc.cluster.local", "9080", "v1", "outbound"]
    ]
    assert len(cluster_rows(clusters, port=9080)) == 4
    assert len(cluster_rows(clusters, subset="v1")) == 2
    assert [r[3] for r in cluster_rows(clusters, direction="inbound")[1:]] == ["inbound"]
    listeners = resources_from_dump(_dump())["listeners"]
    assert listener_rows(listeners, port=15006)[1] == ["0.0.0.0", "15006", "Trans: tls", "-"]
    assert len(listener_rows(listeners, address="10.0.0.1")) == 1
    routes = resources_from_dump(_dump())["routes"]
    assert route_rows(routes, name="9080")[1] == [
        "9080", "reviews:9080", "reviews", "/*", "-", "outbound|9080|v1|r",
    ]  # fmt: skip


def test_endpoints_from_admin_clusters() -> None:
    doc = {"cluster_statuses": [{"name": "outbound|9080||reviews", "host_statuses": [
        {"address": {"socket_address": {"address": "10.0.0.5", "port_value": 9080}},
         "health_status": {"eds_health_status": "HEALTHY"}},
        {"address": {"socket_address": {"address": "10.0.0.6", "port_value": 9080}},
         "health_status": {"eds_health_status": "HEALTHY", "failed_outlier_check": True}},
        {"address": {"socket_address": {"address": "10.0.0.7", "port_value": 9080}},
         "health_status": {"eds_health_status": "UNHEALTHY"}},
    ]}]}  # fmt: skip
    rows = endpoint_rows(endpoints_from_clusters(doc))
    assert rows == [
        ["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"],
        ["10.0.0.5:9080", "HEALTHY", "OK", "outbound|9080||reviews"],
        ["10.0.0.6:9080", "HEALTHY", "FAILED", "outbound|9080||reviews"],
        ["10.0.0.7:9080", "UNHEALTHY", "OK", "outbound|9080||reviews"],
    ]
    assert len(endpoint_rows(endpoints_from_clusters(doc), status="unhealthy")) == 2
    assert len(endpoint_rows(endpoints_from_clusters(doc), address="10.0.0.5")) == 2


def test_secrets_show_identity_serial_and_validity_never_the_key() -> None:
    items = secret_items(resources_from_dump(_dump())["secrets"], now=NOW)
    assert items == [
        {
            "name": "default",
            "type": "Cert Chain",
            "status": "ACTIVE",
            "identity": ["spiffe://cluster.local/ns/default/sa/bookinfo"],
            "valid": True,
            "serial_number": "abc",
            "not_after": "2026-06-01T23:00:00Z",
            "not_before": "2026-05-31T23:00:00Z",
        }
    ]
    rows = secret_rows(items)
    assert rows[0][:4] == ["RESOURCE NAME", "TYPE", "STATUS", "VALID CERT"]
    assert rows[1][-1] == "spiffe://cluster.local/ns/default/sa/bookinfo"
    later = secret_items(resources_from_dump(_dump())["secrets"], now=NOW + timedelta(days=2))
    assert later[0]["valid"] is False


def test_log_levels() -> None:
    assert logging_queries("debug") == ["level=debug"]
    assert logging_queries("rbac:debug,http:warn") == ["paths=rbac:debug,http:warning"]
    assert logging_queries("warning,rbac:debug") == ["level=warning", "paths=rbac:debug"]
    with pytest.raises(click.BadParameter):
        logging_queries("loud")
    text = "active loggers:\n  admin: info\n  rbac: debug\n"
    assert parse_loggers(text) == {"admin": "info", "rbac": "debug"}


def test_sync_diff_compares_what_the_control_plane_sends_with_the_dump() -> None:
    from pilotfish.cli.proxy_config import dynamic_from_dump, sync_diff

    dump = _dump()
    envoy = dynamic_from_dump(dump)
    assert "xds-grpc" not in {c["name"] for c in envoy["clusters"]}, "static ones left out"
    same = {k: [dict(r, **{"@type": "x"}) for r in v] for k, v in envoy.items()}
    text, ok = sync_diff({k: list(reversed(v)) for k, v in same.items()}, dump)
    assert ok and text.splitlines() == ["Clusters Match", "Listeners Match", "Routes Match"]
    changed = {**envoy, "routes": envoy["routes"][:1]}
    text, ok = sync_diff(changed, dump)
    assert not ok
    assert "--- Control Plane Routes\n+++ Envoy Routes\n" in text
    assert '+    "name": "8080",' in text
    # A double the control plane writes as 100.0 and Envoy's dump as 100 is the same value.
    from pilotfish.cli.proxy_config import _lines

    assert _lines([{"name": "a", "sampling": {"value": 100.0}, "w": [1.0, 0.5]}]) == _lines(
        [{"name": "a", "sampling": {"value": 100}, "w": [1, 0.5]}]
    )
