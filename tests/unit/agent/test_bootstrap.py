"""Bootstrap rendering: node, admin, ADS, xds-grpc cluster, readiness listener, defaults."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotfish.agent.bootstrap import (
    ADMIN_CLUSTER,
    AGENT_CLUSTER,
    _system_roots,
    duration,
    render_bootstrap,
    write_bootstrap,
)
from pilotfish.agent.settings import XDS_CLUSTER, AgentSettings, HostPort, XdsTls
from pilotfish.api.node import ADMIN_PORT_METADATA, NodeInfo


def _node(**overrides: Any) -> NodeInfo:
    values: dict[str, Any] = {
        "proxy_type": "sidecar",
        "ip": "10.44.0.7",
        "pod_name": "reviews-v1-abc",
        "namespace": "bookinfo",
        "labels": {"app": "reviews", "version": "v1"},
        "service_account": "bookinfo-reviews",
        "workload_name": "reviews-v1",
    }
    values.update(overrides)
    return NodeInfo(**values)


def _settings(**overrides: Any) -> AgentSettings:
    values: dict[str, Any] = {"node": _node(), "work_dir": Path("/tmp/unused")}
    values.update(overrides)
    return AgentSettings(**values)


def _cluster(boot: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [c for c in boot["static_resources"]["clusters"] if c["name"] == name]
    assert len(matches) == 1, f"cluster {name} not found once"
    return matches[0]


def _endpoint(cluster: dict[str, Any]) -> dict[str, Any]:
    lb = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    return dict(lb["endpoint"]["address"]["socket_address"])


def test_node_id_cluster_and_metadata_round_trip() -> None:
    node = _node(
        interception_mode="NONE",
        outbound_port=25001,
        inbound_ports={9080: 29080},
        extra={"CUSTOM": "x"},
    )
    boot = render_bootstrap(_settings(node=node))
    assert (
        boot["node"]["id"] == "sidecar~10.44.0.7~reviews-v1-abc.bookinfo~bookinfo.svc.cluster.local"
    )
    assert boot["node"]["cluster"] == "reviews.bookinfo"
    # What Envoy sends back is the JSON metadata: it must parse into the same NodeInfo.
    metadata = json.loads(json.dumps(boot["node"]["metadata"]))
    parsed = NodeInfo.from_node(boot["node"]["id"], metadata)
    # ... plus where its Envoy admin listens, for `pilotfish proxy-config`.
    assert parsed == replace(
        node, extra={**node.extra, ADMIN_PORT_METADATA: "15000", **_system_roots(_settings())}
    )
    assert parsed.admin_port == 15000


def test_router_node_round_trip() -> None:
    node = NodeInfo(
        proxy_type="router",
        ip="127.0.0.1",
        pod_name="ingressgateway",
        namespace="istio-system",
        labels={"istio": "ingressgateway"},
        interception_mode="NONE",
        gateway_ports={80: 8080, 443: 8443},
        bind_address="127.0.0.1",
    )
    boot = render_bootstrap(_settings(node=node))
    assert boot["node"]["id"].startswith("router~127.0.0.1~ingressgateway.istio-system~")
    parsed = NodeInfo.from_node(boot["node"]["id"], boot["node"]["metadata"])
    assert parsed == replace(
        node, extra={ADMIN_PORT_METADATA: "15000", **_system_roots(_settings())}
    )


def test_system_roots_are_the_hosts_bundle_or_the_option(tmp_path: Path) -> None:
    # Debian's bundle on this host (the default), or the file --system-ca-file names.
    default = NodeInfo.from_node(
        "sidecar~1.2.3.4~p.ns~ns.svc.cluster.local",
        render_bootstrap(_settings())["node"]["metadata"],
    )
    assert default.system_roots == "/etc/ssl/certs/ca-certificates.crt"
    bundle = tmp_path / "roots.pem"
    own = render_bootstrap(_settings(system_ca_file=bundle))["node"]["metadata"]
    assert own["SYSTEM_ROOTS"] == str(bundle)


def test_admin_is_loopback_only_on_the_configured_port() -> None:
    boot = render_bootstrap(_settings(admin_port=25000))
    assert boot["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 25000,
    }


@pytest.mark.parametrize(("api", "api_type"), [("delta", "DELTA_GRPC"), ("sotw", "GRPC")])
def test_ads_config(api: str, api_type: str) -> None:
    boot = render_bootstrap(_settings(xds_api=api, initial_fetch_timeout_s=2.5))
    ads = boot["dynamic_resources"]["ads_config"]
    assert ads["api_type"] == api_type
    assert ads["transport_api_version"] == "V3"
    assert ads["set_node_on_first_message_only"] is True
    (service,) = ads["grpc_services"]
    assert service["envoy_grpc"]["cluster_name"] == XDS_CLUSTER
    # A restarted control plane is found again within about a second.
    backoff = service["envoy_grpc"]["retry_policy"]["retry_back_off"]
    assert backoff == {"base_interval": "0.25s", "max_interval": "1s"}
    for key in ("cds_config", "lds_config"):
        source = boot["dynamic_resources"][key]
        assert source == {
            "ads": {},
            "resource_api_version": "V3",
            "initial_fetch_timeout": "2.500s",
        }


def test_xds_cluster_plaintext_http2_static_ip() -> None:
    boot = render_bootstrap(_settings(discovery_address=HostPort("127.0.0.9", 25012)))
    cluster = _cluster(boot, XDS_CLUSTER)
    assert cluster["type"] == "STATIC"
    assert _endpoint(cluster) == {"address": "127.0.0.9", "port_value": 25012}
    options = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert "http2_protocol_options" in options["explicit_http_config"]
    assert "transport_socket" not in cluster
    assert cluster["connect_timeout"] == "1s"


def test_xds_cluster_dns_name_uses_strict_dns() -> None:
    boot = render_bootstrap(_settings(discovery_address=HostPort.parse("istiod.local:15012")))
    cluster = _cluster(boot, XDS_CLUSTER)
    assert cluster["type"] == "STRICT_DNS"
    assert _endpoint(cluster) == {"address": "istiod.local", "port_value": 15012}


def test_xds_cluster_tls_files_and_san() -> None:
    tls = XdsTls(
        ca_file=Path("/etc/pf/ca.pem"),
        cert_file=Path("/etc/pf/cert.pem"),
        key_file=Path("/etc/pf/key.pem"),
        server_name="istiod.istio-system.svc",
    )
    cluster = _cluster(render_bootstrap(_settings(xds_tls=tls)), XDS_CLUSTER)
    context = cluster["transport_socket"]["typed_config"]
    assert context["sni"] == "istiod.istio-system.svc"
    common = context["common_tls_context"]
    assert common["validation_context"]["trusted_ca"] == {"filename": "/etc/pf/ca.pem"}
    assert common["validation_context"]["match_typed_subject_alt_names"][0]["matcher"] == {
        "exact": "istiod.istio-system.svc"
    }
    assert common["tls_certificates"] == [
        {
            "certificate_chain": {"filename": "/etc/pf/cert.pem"},
            "private_key": {"filename": "/etc/pf/key.pem"},
        }
    ]
    assert common["alpn_protocols"] == ["h2"]


def test_tls_cert_without_key_is_refused() -> None:
    with pytest.raises(ValueError, match="cert_file and key_file"):
        XdsTls(ca_file=Path("ca"), cert_file=Path("cert"))


def _readiness(boot: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    (listener,) = boot["static_resources"]["listeners"]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return listener, hcm["route_config"]["virtual_hosts"][0]["routes"]


def test_readiness_listener_routes_to_agent() -> None:
    boot = render_bootstrap(_settings(readiness_port=25021, agent_port=25020))
    listener, routes = _readiness(boot)
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 25021}
    assert routes[0]["match"]["path"] == "/healthz/ready"
    assert routes[0]["route"]["cluster"] == AGENT_CLUSTER
    assert "prefix_rewrite" not in routes[0]["route"]
    assert _endpoint(_cluster(boot, AGENT_CLUSTER)) == {"address": "127.0.0.1", "port_value": 25020}
    assert routes[-1]["direct_response"]["status"] == 404


def test_readiness_without_agent_rewrites_to_admin_ready() -> None:
    boot = render_bootstrap(
        _settings(admin_port=25000, agent_port=None, readiness_bind="127.0.0.1")
    )
    listener, routes = _readiness(boot)
    assert listener["address"]["socket_address"]["address"] == "127.0.0.1"
    assert routes[0]["route"] == {
        "cluster": ADMIN_CLUSTER,
        "timeout": "2s",
        "prefix_rewrite": "/ready",
    }
    assert _endpoint(_cluster(boot, ADMIN_CLUSTER)) == {"address": "127.0.0.1", "port_value": 25000}


def test_overload_manager_runtime_and_stats_defaults() -> None:
    boot = render_bootstrap(_settings(max_downstream_connections=1234))
    (monitor,) = boot["overload_manager"]["resource_monitors"]
    assert monitor["name"] == "envoy.resource_monitors.global_downstream_max_connections"
    assert monitor["typed_config"]["max_active_downstream_connections"] == 1234
    layers = boot["layered_runtime"]["layers"]
    assert [layer["name"] for layer in layers] == ["defaults", "admin"]
    assert "stats_config" in boot


def test_output_is_json_and_written_atomically(tmp_path: Path) -> None:
    boot = render_bootstrap(_settings())
    path = write_bootstrap(boot, tmp_path / "sub" / "envoy.json")
    assert json.loads(path.read_text()) == boot
    assert list(path.parent.iterdir()) == [path]


def test_yaml_output(tmp_path: Path) -> None:
    boot = render_bootstrap(_settings())
    path = write_bootstrap(boot, tmp_path / "envoy.yaml")
    assert yaml.safe_load(path.read_text()) == boot


@pytest.mark.parametrize(("seconds", "text"), [(10, "10s"), (0, "0s"), (0.25, "0.250s")])
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("127.0.0.1:15012", "127.0.0.1", 15012), ("[::1]:80", "::1", 80), ("cp:1", "cp", 1)],
)
def test_host_port_parse(text: str, host: str, port: int) -> None:
    parsed = HostPort.parse(text)
    assert (parsed.host, parsed.port) == (host, port)


@pytest.mark.parametrize("text", ["nohost", ":15012", "h:0", "h:70000", "h:x"])
def test_host_port_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=text.split(":")[0] or "address"):
        HostPort.parse(text)


def test_settings_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="admin_port 0"):
        _settings(admin_port=0)
    with pytest.raises(ValueError, match="concurrency"):
        _settings(concurrency=0)


def test_xds_cluster_takes_its_roots_from_the_agents_rootca_with_an_identity() -> None:
    # The mesh roots then follow a root rotation (the control plane's certificate moves to
    # the new root when it is activated); the SAN check stays.
    tls = XdsTls(ca_file=Path("/etc/pf/ca.pem"), server_name="istiod.istio-system.svc")
    boot = render_bootstrap(_settings(xds_tls=tls), sds_socket=Path("/run/sds/socket"))
    names = [c["name"] for c in boot["static_resources"]["clusters"]]
    assert names.index("sds-grpc") < names.index(XDS_CLUSTER)
    common = _cluster(boot, XDS_CLUSTER)["transport_socket"]["typed_config"]["common_tls_context"]
    assert "validation_context" not in common
    combined = common["combined_validation_context"]
    assert "trusted_ca" not in combined["default_validation_context"]
    assert combined["default_validation_context"]["match_typed_subject_alt_names"][0][
        "matcher"
    ] == {"exact": "istiod.istio-system.svc"}
    sds = combined["validation_context_sds_secret_config"]
    assert sds["name"] == "ROOTCA"
    grpc_service = sds["sds_config"]["api_config_source"]["grpc_services"][0]
    assert grpc_service["envoy_grpc"]["cluster_name"] == "sds-grpc"
    # Envoy starts alongside the agent's SDS server: asked too early, it asks again soon.
    backoff = grpc_service["envoy_grpc"]["retry_policy"]["retry_back_off"]
    assert backoff == {"base_interval": "0.05s", "max_interval": "1s"}


def test_registration_token_on_the_ads_stream_only_when_given(tmp_path: Path) -> None:
    plain = render_bootstrap(_settings())["dynamic_resources"]["ads_config"]["grpc_services"][0]
    assert "initial_metadata" not in plain
    boot = render_bootstrap(_settings(), xds_token="abc.def.ghi")
    (service,) = boot["dynamic_resources"]["ads_config"]["grpc_services"]
    assert service["initial_metadata"] == [{"key": "authorization", "value": "Bearer abc.def.ghi"}]
    # The file then holds a secret: owner-only without a group for Envoy.
    path = write_bootstrap(boot, tmp_path / "b.json", private_to=(None, None))
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text()) == boot
    assert write_bootstrap(boot, tmp_path / "c.json").stat().st_mode & 0o777 == 0o644
