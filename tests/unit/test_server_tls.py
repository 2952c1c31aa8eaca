"""The control plane's xDS TLS default: settings, the `server` command's options, the serving
certificate's names (pure) and the files it is served from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509

from pilotfish import server as server_module
from pilotfish.cli.main import cli
from pilotfish.server import ServerSettings
from pilotfish.server_identity import (
    ControlPlaneIdentity,
    IdentitySettings,
    ipv4_local_addresses,
    ipv6_local_addresses,
    serving_hosts,
)

FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.7
              /32 host LOCAL
Local:
     +-- 10.244.0.0/16 2 0 2
           |-- 10.244.0.1
              /32 host LOCAL
           |-- 192.0.2.7
              /32 host LOCAL
"""

IF_INET6 = """\
fd000000000000000000000000000002 04 40 00 82     eth0
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
"""


def test_tls_is_the_default() -> None:
    settings = ServerSettings.build(
        data_dir=Path("/tmp/x"), listen="127.0.0.1:1", xds_listen="127.0.0.1:2", store_url=None
    )
    assert settings.xds_tls is True
    assert IdentitySettings(data_dir=Path("/tmp/x")).xds_tls is True


def _server_settings(monkeypatch: pytest.MonkeyPatch, *args: str) -> ServerSettings:
    seen: list[ServerSettings] = []
    monkeypatch.setattr(server_module, "run_server", seen.append)
    result = CliRunner().invoke(cli, ["server", "--data-dir", "/tmp/pf-unit", *args])
    assert result.exit_code == 0, result.output
    (settings,) = seen
    return settings


def test_server_command_serves_tls_unless_told_plaintext(monkeypatch: pytest.MonkeyPatch) -> None:
    default = _server_settings(monkeypatch)
    assert default.xds_tls and default.xds_sans == ()
    plain = _server_settings(monkeypatch, "--xds-plaintext")
    assert not plain.xds_tls
    named = _server_settings(monkeypatch, "--xds-san", "cp.example", "--xds-san", "192.0.2.9")
    assert named.xds_tls and named.xds_sans == ("cp.example", "192.0.2.9")


def test_server_help_documents_the_plaintext_option() -> None:
    text = "".join(CliRunner().invoke(cli, ["server", "--help"]).output.split())  # unwrapped
    assert "--xds-plaintext" in text and "fortestsandtrustedloopbacksetups" in text
    assert "/ca/mesh-roots.pem" in text and "--xds-tls" not in text
    assert CliRunner().invoke(cli, ["server", "--xds-tls"]).exit_code != 0


def test_serving_hosts_for_a_specific_address() -> None:
    hosts = serving_hosts("10.244.0.1", ("cp.example",), host_addresses=["192.0.2.7"])
    assert hosts[:3] == ["pilotfish.istio-system.svc", "istiod.istio-system.svc", "localhost"]
    assert "127.0.0.1" in hosts and "10.244.0.1" in hosts and "cp.example" in hosts
    assert "192.0.2.7" not in hosts  # only a wildcard listen address takes the host's
    assert len(hosts) == len(set(hosts))


def test_serving_hosts_for_a_wildcard_address_are_the_hosts_addresses() -> None:
    addresses = ["127.0.0.1", "192.0.2.7", "fe80::1", "fd00::2", "0.0.0.0", "junk"]
    hosts = serving_hosts("0.0.0.0", host_addresses=addresses)
    assert "0.0.0.0" not in hosts
    assert {"127.0.0.1", "192.0.2.7", "fd00::2"} <= set(hosts)
    assert "fe80::1" not in hosts and "junk" not in hosts  # link-local or not an address
    assert hosts.count("127.0.0.1") == 1


def test_serving_hosts_for_a_name() -> None:
    assert "cp.example" in serving_hosts("CP.example")


def test_local_addresses_from_proc_text() -> None:
    assert ipv4_local_addresses(FIB_TRIE) == ["127.0.0.1", "192.0.2.7", "10.244.0.1"]
    assert ipv6_local_addresses(IF_INET6) == ["fd00::2", "::1"]
    assert ipv4_local_addresses("") == [] and ipv6_local_addresses("garbage line") == []


def _sans(path: Path) -> tuple[list[str], list[str]]:
    cert = x509.load_pem_x509_certificates(path.read_bytes())[0]
    sans: Any = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = sans.get_values_for_type(x509.DNSName)
    return dns, [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]


def test_serving_certificate_files_and_plaintext(tmp_path: Path) -> None:
    identity = ControlPlaneIdentity.open(
        IdentitySettings(data_dir=tmp_path, xds_host="10.244.0.1", xds_sans=("cp.example",))
    )
    tls = identity.xds_tls()
    assert tls is not None and tls.ca_file is None
    assert tls.key_file.stat().st_mode & 0o077 == 0
    dns, ips = _sans(tls.cert_file)
    assert "pilotfish.istio-system.svc" in dns and "cp.example" in dns
    assert ips[:2] == ["127.0.0.1", "10.244.0.1"]
    roots = identity.root_cert_path
    assert roots == tmp_path / "ca" / "mesh-roots.pem"
    assert roots.read_text() == identity.ca.trust_bundle()
    plain = ControlPlaneIdentity.open(IdentitySettings(data_dir=tmp_path, xds_tls=False))
    assert plain.xds_tls() is None


def test_wildcard_serving_certificate_names_this_hosts_addresses(tmp_path: Path) -> None:
    identity = ControlPlaneIdentity.open(IdentitySettings(data_dir=tmp_path, xds_host="0.0.0.0"))
    tls = identity.xds_tls()
    assert tls is not None
    _, ips = _sans(tls.cert_file)
    assert "127.0.0.1" in ips and "0.0.0.0" not in ips
