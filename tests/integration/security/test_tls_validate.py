"""Generated TLS configuration loads in the real Envoy (``envoy --mode validate``).

The static bootstrap of ``static_envoy`` plus what a real proxy has around it: the agent's
``sds-grpc`` cluster for the workload certificate, and the ``kubernetes://`` secrets the
control plane sends over ADS (``proxy_resources``: translation and the xDS secrets generator)
as static secrets (Envoy's validate mode crashes on
ADS-sourced secrets in clusters). Envoy checks the TLS contexts and certificates, transport
socket matches, filter chain matches (duplicates, TLS inspector) and XFCC settings without
connecting anywhere.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from pilotfish.agent.envoy_binary import envoy_binary
from pilotfish.identity import CASettings, MeshCA
from pilotfish.server import proxy_resources
from pilotfish.translate.generator import SECRET_TYPE
from tests.integration.translate.static_envoy import static_bootstrap
from tests.unit.translate.fixtures import push_for, router_node, sidecar_node
from tests.unit.translate.test_peer_authn import pa
from tests.unit.translate.test_tls import DOCS, GATEWAY, MESH, client, dr, secret

pytestmark = pytest.mark.integration

_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def _static_secrets(node: Any) -> None:
    """Drop ADS ``sdsConfig`` from secret references (they name static secrets then)."""
    if isinstance(node, dict):
        if "ads" in (node.get("sdsConfig") or {}):
            del node["sdsConfig"]
        for value in node.values():
            _static_secrets(value)
    elif isinstance(node, list):
        for value in node:
            _static_secrets(value)


def _validate(resources: Any, tmp_path: Path, name: str) -> None:
    boot = json_format.MessageToDict(static_bootstrap(resources))
    _static_secrets(boot)
    boot["staticResources"]["secrets"] = [
        json_format.MessageToDict(s) for s in resources[SECRET_TYPE].values()
    ]
    grpc_cluster = {
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/" + _HTTP_OPTIONS,
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "connect_timeout": "1s",
    }
    boot["staticResources"].setdefault("clusters", []).extend(
        [
            {
                **grpc_cluster,
                "name": "sds-grpc",
                "type": "STATIC",
                "load_assignment": {
                    "cluster_name": "sds-grpc",
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                        "pipe": {"path": str(tmp_path / "sds.sock")}}}}]}],
                },
            },
        ]
    )  # fmt: skip
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(boot, indent=1))
    proc = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(path), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"envoy rejected {path}:\n{proc.stdout}\n{proc.stderr}"


MESHED_SERVER = sidecar_node(app="reviews", ip="10.1.0.12", labels={"app": "reviews", **MESH})
EXPLICIT_SERVER = sidecar_node(
    app="reviews", ip="127.0.0.1", labels={"app": "reviews", **MESH},
    interception_mode="NONE", outbound_port=15301, inbound_ports={9080: 15302},
)  # fmt: skip


def _pem() -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        ca = MeshCA.open(CASettings(Path(tmp)))
        serving = ca.issue_serving_certificate(["bookinfo.example.com"])
        return {
            "tls_crt": serving.cert_chain_pem,
            "tls_key": serving.private_key_pem,
            "ca_crt": ca.trust_bundle(),
        }


PEM = _pem()


CASES: dict[str, tuple[list[dict[str, Any]], Any]] = {
    "auto-mtls-client": ([], client()),
    "permissive-redirect": ([], MESHED_SERVER),
    "strict-redirect": ([pa("m", "istio-system", "STRICT")], MESHED_SERVER),
    "strict-port-disable-explicit": (
        [pa("w", "default", "STRICT", {"app": "reviews"}, {9080: "DISABLE"})],
        EXPLICIT_SERVER,
    ),
    "permissive-explicit": ([], EXPLICIT_SERVER),
    "dr-simple-files": (
        [dr({"mode": "SIMPLE", "caCertificates": "/etc/ssl/certs/ca-certificates.crt"})],
        client(),
    ),
    "dr-mutual-credential": (
        [
            dr({"mode": "MUTUAL", "credentialName": "cred"}),
            secret("cred", "default", **PEM),
        ],
        client(),
    ),
    "gateway-https-mutual-passthrough": (
        [
            *GATEWAY,
            secret("bookinfo", **PEM),
            secret("mutual", **PEM),
        ],
        router_node(
            gateway_ports={443: 8443, 8443: 9443}, labels={"istio": "ingressgateway", **MESH}
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tls_config_loads_in_envoy(case: str, tmp_path: Path) -> None:
    extra, node = CASES[case]
    _validate(proxy_resources(node, push_for([*DOCS, *extra])), tmp_path, case)
