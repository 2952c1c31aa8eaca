from __future__ import annotations

from pathlib import Path

from pilotfish.identity import pki
from pilotfish.identity.ca import CASettings, MeshCA
from pilotfish.identity.spiffe import SpiffeId
from pilotfish.identity.trust_watch import TrustWatch, fingerprint, issuing_root

ID = SpiffeId("cluster.local", "default", "reviews")


def _issue(ca: MeshCA) -> tuple[str, str]:
    key = pki.generate_private_key()
    return ca.sign_workload(pki.build_csr(key, ID), ID)


def test_records_what_each_watching_workload_trusts_and_is_signed_by(tmp_path: Path) -> None:
    ca = MeshCA.open(CASettings(tmp_path / "ca"))
    old = ca.roots[0]
    chain, bundle = _issue(ca)
    watch = TrustWatch()
    watch.record("sidecar~a", ID.uri, chain, bundle, ca.roots)  # not watching: no stream
    assert [w.watching for w in watch.workloads()] == [False]
    watch.stream_opened("sidecar~a")
    new = ca.add_root()
    chain, bundle = _issue(ca)
    watch.record("sidecar~a", ID.uri, chain, bundle, ca.roots)
    (w,) = watch.workloads()
    assert w.watching and w.issuer == fingerprint(old)
    assert w.trusts == (fingerprint(old), fingerprint(new))
    ca.activate_root()
    assert issuing_root(_issue(ca)[0], ca.roots) == fingerprint(new)
    watch.stream_closed("sidecar~a")  # it left (or reconnects): kept a while, then forgotten
    assert [w.watching for w in watch.workloads()] == [False]
    assert watch.workloads(keep=-1) == []
    watch.record("", ID.uri, chain, bundle, ca.roots)  # no node: nothing to record
    assert watch.workloads() == []
