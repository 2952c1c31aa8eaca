"""Gateway rules."""

from __future__ import annotations

from typing import Any

import pytest

from ._util import body, has, ok


def server(
    number: int = 80,
    protocol: str = "HTTP",
    name: str = "http",
    hosts: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    s: dict[str, Any] = {
        "port": {"number": number, "name": name, "protocol": protocol},
        "hosts": hosts or ["*"],
    }
    s.update(extra)
    return s


def gw(*servers: dict[str, Any]) -> dict[str, Any]:
    return body(
        "Gateway", {"selector": {"istio": "ingressgateway"}, "servers": list(servers)}, name="gw"
    )


def test_missing_servers() -> None:
    has(gw(), "spec.servers", "gateway must have at least one server")
    ok(gw(server()))


def test_https_without_tls() -> None:
    has(
        gw(server(443, "HTTPS", "https")),
        "spec.servers[0].tls",
        "server must have TLS settings for HTTPS/TLS protocols",
    )
    has(gw(server(443, "TLS", "tls")), "spec.servers[0].tls", "server must have TLS settings")
    ok(gw(server(443, "HTTPS", "https", tls={"mode": "SIMPLE", "credentialName": "cred"})))
    ok(gw(server(443, "TLS", "tls", tls={"mode": "PASSTHROUGH"})))


def test_plain_http_with_tls_settings() -> None:
    msg = "server cannot have TLS settings for plain text HTTP ports"
    has(gw(server(tls={"mode": "SIMPLE", "credentialName": "c"})), "spec.servers[0].tls", msg)
    has(
        gw(server(tls={"httpsRedirect": True, "serverCertificate": "/c.pem"})),
        "spec.servers[0].tls",
        msg,
    )
    ok(gw(server(tls={"httpsRedirect": True})))
    has(
        gw(server(31400, "TCP", "tcp", tls={"mode": "SIMPLE"})),
        "spec.servers[0].tls",
        "non HTTPS/TLS ports",
    )


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("reviews", "short names (non FQDN) are not allowed"),
        ("*bar.com", 'partial wildcard "*bar.com" not allowed'),
        ("foo.*.com", "invalid"),
        ("Bad_NS/foo.com", 'invalid namespace value "Bad_NS" in gateway'),
        ("/foo.com", "config namespace and dnsName in host entry cannot be empty"),
    ],
)
def test_invalid_hosts(host: str, reason: str) -> None:
    has(gw(server(hosts=[host])), "spec.servers[0].hosts[0]", reason)


def test_valid_hosts() -> None:
    ok(
        gw(
            server(
                hosts=[
                    "*",
                    "*.example.com",
                    "bookinfo.example.com",
                    "prod/*.example.com",
                    "./foo.com",
                    "*/bar.com",
                    "10.0.0.1",
                ]
            )
        )
    )


def test_hosts_required() -> None:
    s = server()
    s["hosts"] = []
    has(gw(s), "spec.servers[0].hosts", "server config must contain at least one host")


def test_duplicate_port_names() -> None:
    has(
        gw(server(80, name="http"), server(8080, name="http")),
        "spec.servers[1].port.name",
        "port names in servers must be unique: duplicate name http",
    )
    ok(gw(server(80, name="http"), server(8080, name="http-alt")))


def test_credential_name_with_passthrough_is_a_warning_as_in_istio() -> None:
    v = ok(gw(server(443, "TLS", "tls", tls={"mode": "PASSTHROUGH", "credentialName": "c"})))
    assert any("PASSTHROUGH mode does not use certificates" in w.reason for w in v.warnings)
    v = ok(gw(server(443, "TLS", "tls", tls={"mode": "PASSTHROUGH"})))
    assert v.warnings == ()


def test_port_number_protocol_and_name() -> None:
    has(gw(server(0)), "spec.servers[0].port.number", "port number 0 must be in the range 1..65535")
    has(gw(server(65536)), "spec.servers[0].port.number", "must be in the range 1..65535")
    has(gw(server(protocol="SMTP")), "spec.servers[0].port.protocol", 'invalid protocol "SMTP"')
    has(gw(server(name="")), "spec.servers[0].port.name", "port name must be set")
    ok(
        gw(
            server(15443, "TLS", "tls", tls={"mode": "AUTO_PASSTHROUGH"}),
            server(9080, "GRPC", "grpc"),
        )
    )


def test_server_tls_modes() -> None:
    has(
        gw(server(443, "HTTPS", "https", tls={"mode": "SIMPLE"})),
        "spec.servers[0].tls.serverCertificate",
        "SIMPLE TLS requires a server certificate",
    )
    has(
        gw(
            server(
                443,
                "HTTPS",
                "https",
                tls={"mode": "MUTUAL", "serverCertificate": "/c", "privateKey": "/k"},
            )
        ),
        "spec.servers[0].tls.caCertificates",
        "MUTUAL TLS requires a client CA bundle",
    )
    has(
        gw(server(443, "HTTPS", "https", tls={"mode": "ISTIO_MUTUAL", "credentialName": "c"})),
        "spec.servers[0].tls.credentialName",
        "ISTIO_MUTUAL TLS cannot have associated credentialName",
    )
    ok(
        gw(
            server(
                443,
                "HTTPS",
                "https",
                tls={"mode": "SIMPLE", "serverCertificate": "/c", "privateKey": "/k"},
            )
        )
    )
