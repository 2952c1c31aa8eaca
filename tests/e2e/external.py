"""An "external" host for egress tests: a network namespace outside the mesh, reached from
pods through the host's routing, with an HTTP server on port 80, an HTTPS server on 443
(certificate from a CA of its own) and a DNS server (Debian's dnsmasq) on port 53 answering
the names it is given. Everything is removed when the context ends: processes, the namespace
and its veth (the host end goes with it)."""

from __future__ import annotations

import ipaddress
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_rng = random.SystemRandom()

#: Answers every request with who it is, the path and whether TLS was used; a
#: ``/status/N`` path answers N. Arguments: port, then certificate and key for HTTPS, then a
#: CA file to require client certificates from (mutual TLS; the answer then names the
#: client's certificate by its first DNS SAN).
SERVER = r"""
import http.server, ssl, sys
port, tls = int(sys.argv[1]), len(sys.argv) > 2
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = int(self.path.split("/")[2]) if self.path.startswith("/status/") else 200
        body = f"external tls={tls} host={self.headers.get('Host')} path={self.path}"
        if len(sys.argv) > 4:
            sans = dict(self.connection.getpeercert().get("subjectAltName") or ())
            body += f" client={sans.get('DNS')}"
        body = (body + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("0.0.0.0", port), H)
if tls:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    if len(sys.argv) > 4:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(sys.argv[4])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"""


@dataclass
class External:
    netns: str
    ip: str
    ca_pem: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


def _free_net() -> ipaddress.IPv4Network:
    out = subprocess.run(
        ["ip", "-j", "-4", "route", "show", "table", "all"], capture_output=True, text=True
    ).stdout
    used = [
        ipaddress.IPv4Network(str(r["dst"]), strict=False)
        for r in json.loads(out or "[]")
        if r.get("dst") and r.get("dst") != "default"
    ]
    for _ in range(200):
        net = ipaddress.IPv4Network(f"10.{_rng.randint(150, 199)}.{_rng.randint(0, 255)}.0/30")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free /30 for the external host")


def _certs(tmp: Path, names: list[str]) -> tuple[str, Path, Path]:
    """A CA and a server certificate for ``names`` signed by it: (CA PEM, cert, key), the
    files named ``server.crt``/``server.key`` in ``tmp``."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "external test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "server.crt", tmp / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca.public_bytes(serialization.Encoding.PEM).decode(), cert_path, key_path


def serve(ext: External, port: int, *tls: Path) -> None:
    """One more ``SERVER`` on the external host (``tls``: certificate, key and, for mutual
    TLS, the client CA), stopped with the host; returns once it accepts connections."""
    run = ["ip", "netns", "exec", ext.netns]
    ext.procs.append(
        subprocess.Popen([*run, sys.executable, "-c", SERVER, str(port), *map(str, tls)])
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        probe = subprocess.run(
            [
                *run,
                "python3",
                "-c",
                f"import socket; socket.create_connection(('{ext.ip}', {port}), 1)",
            ],
            capture_output=True,
        )
        if probe.returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"the external server on {port} did not start")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextmanager
def external_host(tmp: Path, names: list[str], cert_names: list[str]) -> Iterator[External]:
    """The external host: ``names`` resolve to it through its dnsmasq; its HTTPS certificate
    names ``cert_names``."""
    if shutil.which("dnsmasq") is None:
        raise AssertionError("dnsmasq is not installed (see scripts/install-system-deps.sh)")
    tag = "".join(_rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5))
    netns, host_link = f"ext-{tag}", f"ext{tag}h"
    net = _free_net()
    host_ip, ext_ip = (str(h) for h in net.hosts())
    ca_pem, cert, key = _certs(tmp, cert_names)
    ext = External(netns, ext_ip, ca_pem)
    _ip("netns", "add", netns)
    try:
        _ip("link", "add", host_link, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("addr", "add", f"{host_ip}/30", "dev", host_link)
        _ip("link", "set", host_link, "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "addr", "add", f"{ext_ip}/30", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        _ip("-n", netns, "route", "add", "default", "via", host_ip)
        run = ["ip", "netns", "exec", netns]
        ext.procs.append(subprocess.Popen([*run, sys.executable, "-c", SERVER, "80"]))
        ext.procs.append(
            subprocess.Popen([*run, sys.executable, "-c", SERVER, "443", str(cert), str(key)])
        )
        # Every other name: NXDOMAIN, as a real resolver answers (search-path expansions).
        dns = [f"--address=/{n}/{ext_ip}" for n in names] + ["--address=/#/"]
        ext.procs.append(
            subprocess.Popen(
                [*run, "dnsmasq", "--keep-in-foreground", "--no-hosts", "--no-resolv",
                 f"--listen-address={ext_ip}", "--bind-interfaces", "--user=root",
                 "--pid-file=", *dns],
                stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = subprocess.run(
                [*run, "curl", "-sk", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code}",
                 f"http://{ext_ip}/", f"https://{ext_ip}/"],
                capture_output=True, text=True,
            ).stdout  # fmt: skip
            if probe == "200200":
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the external servers did not start")
        yield ext
    finally:
        for p in ext.procs:
            p.send_signal(signal.SIGTERM)
        for p in ext.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        subprocess.run(["ip", "link", "del", host_link], capture_output=True)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
