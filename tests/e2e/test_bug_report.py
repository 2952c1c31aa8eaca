"""`pilotfish bug-report` on a real local mesh: one archive with the config, proxy status,
every proxy's config dump and log and the component logs, and no private key, Secret data or
token inside."""

from __future__ import annotations

import base64
import datetime
import json
import tarfile

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.conftest import bring_up
from tests.e2e.test_install import WEB

pytestmark = pytest.mark.e2e


def _tls_secret() -> tuple[dict[str, object], bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("web.example.com")]), False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    secret = {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "web-cert", "namespace": "istio-system"},
        "data": {"tls.crt": base64.b64encode(cert_pem).decode(),
                 "tls.key": base64.b64encode(key_pem).decode()},
    }  # fmt: skip
    return secret, key_pem, cert_pem


GATEWAY = {
    "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"selector": {"istio": "ingressgateway"},
             "servers": [{"port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                          "hosts": ["web.example.com"],
                          "tls": {"mode": "SIMPLE", "credentialName": "web-cert"}}]},
}  # fmt: skip


def test_bug_report_collects_everything_but_secrets(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("bugreport")
    secret, key_pem, _ = _tls_secret()
    with bring_up(root) as mesh:
        manifest = root / "web.json"
        items = [*WEB, secret, GATEWAY]
        manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        mesh.cli("apply", "-f", str(manifest))
        pod = mesh.wait_pods_ready("default", 1, timeout=60)[0]["metadata"]["name"]
        mesh.run("pilotfish.cli.main", "wait", "--for=synced")

        out = root / "report.tar.gz"
        res = mesh.run("pilotfish.cli.main", "bug-report", "-o", str(out),
                       "--data-dir", str(mesh.data_dir))  # fmt: skip
        assert f"wrote {out}" in res.stdout, res.stdout + res.stderr
        assert "not collected" not in res.stderr, res.stderr

        with tarfile.open(out) as tar:
            files = {
                m.name.split("/", 1)[1]: tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar.getmembers()
                if m.isfile()
            }
        names = set(files)
        for expected in (
            "versions.txt", "status.txt", "proxy-status.json", "config/meshconfig.yaml",
            "config/gateways.yaml", "config/secrets.yaml", "config/pods.yaml",
            f"proxies/{pod}.default/config_dump.json", f"proxies/{pod}.default/istio-proxy.log",
            f"proxies/{pod}.default/clusters.txt",
            "proxies/istio-ingressgateway.istio-system/config_dump.json",
            "proxies/istio-ingressgateway.istio-system/istio-proxy.log",
            "logs/server.log", "logs/runtime.log",
        ):  # fmt: skip
            assert expected in names, sorted(names)
        assert b"envoy:" in files["versions.txt"] and b"1.40." in files["versions.txt"]
        dump = json.loads(files["proxies/istio-ingressgateway.istio-system/config_dump.json"])
        assert any("ListenersConfigDump" in c["@type"] for c in dump["configs"])
        status = json.loads(files["proxy-status.json"])
        assert {f"{p['pod_name']}.{p['namespace']}" for p in status} >= {f"{pod}.default"}

        # No private key, no Secret data, no API token anywhere in the archive.
        everything = b"\n".join(files.values())
        token = (mesh.data_dir / "admin-token").read_text().strip().encode()
        data = secret["data"]
        assert isinstance(data, dict)
        for forbidden in (
            b"PRIVATE KEY",
            key_pem.splitlines()[1],
            data["tls.key"].encode()[:40],
            data["tls.crt"].encode()[:40],
            token,
        ):
            assert forbidden not in everything, forbidden[:20]
        assert b"dataKeys" in files["config/secrets.yaml"]
        assert b"tls.key" in files["config/secrets.yaml"]  # the key's name only
