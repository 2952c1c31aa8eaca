"""`pilotfish x explain` against reality: a Bookinfo-shaped mesh (productpage calling reviews
v1/v2/v3 over mTLS) with routing by header and path, a fault abort, a fault abort on half of
the requests, and DENY and ALLOW AuthorizationPolicies. For a few hundred generated requests,
the explainer's predicted subset and allow/deny verdict (and status) must match what real
Envoys did with the same request; a request the explainer says a share-of-requests fault may
abort either matches or was aborted with the fault's status, and the aborted share of a burst
is plausible for the percentage."""

from __future__ import annotations

import json
import random
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from pilotfish.api import kinds
from tests.conftest import _free_port
from tests.integration.authz.conftest import settled
from tests.integration.harness import Mesh, Sidecar, start_control_plane

pytestmark = pytest.mark.integration

SETUP = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
"""

ROUTING = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {x-fault: {exact: abort}}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{headers: {x-fault: {exact: partial}}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 50}}}
    route: [{destination: {host: reviews, subset: v3}}]
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /v3}}, {headers: {x-canary: {exact: "true"}}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - match: [{uri: {prefix: /split}}]
    route:
    - {destination: {host: reviews, subset: v1}, weight: 50}
    - {destination: {host: reviews, subset: v2}, weight: 50}
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin*"]}}]
  - when: [{key: "request.headers[x-block]", values: ["yes"]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-callers, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/bookinfo-productpage"]}}]
    to: [{operation: {methods: ["GET", "POST"]}}]
  - to: [{operation: {paths: ["/health"], methods: ["GET"]}}]
"""


@dataclass
class BookinfoMesh:
    mesh: Mesh
    productpage: Sidecar
    intruder: Sidecar


@pytest.fixture(scope="module")
def bookinfo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BookinfoMesh]:
    tmp = tmp_path_factory.mktemp("explain")
    cp = start_control_plane(tmp / "data", tmp / "config", _free_port(), _free_port())
    mesh = Mesh(cp, tmp, _free_port)
    try:
        mesh.apply(SETUP)
        for version in ("v1", "v2", "v3"):
            mesh.add(
                f"reviews-{version}",
                {"app": "reviews", "version": version},
                service_account="bookinfo-reviews",
                mtls=True,
            )
        pp = mesh.add(
            "productpage",
            {"app": "productpage", "version": "v1"},
            app_port=None,
            service_account="bookinfo-productpage",
            mtls=True,
        )
        intruder = mesh.add(
            "sleep", {"app": "sleep"}, app_port=None, service_account="sleep", mtls=True
        )
        mesh.apply(ROUTING)
        yield BookinfoMesh(mesh, pp, intruder)
    finally:
        mesh.stop()
        cp.kill(signal.SIGKILL)


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]


def generated_cases(n: int, seed: int = 14) -> list[Case]:
    rng = random.Random(seed)
    paths = ["/", "/reviews/0", "/reviews/1?page=2", "/admin", "/admin/users", "/v3", "/v3/x",
             "/health", "/healthz", "/split", "/split/a"]  # fmt: skip
    out = []
    for _ in range(n):
        method = rng.choice(["GET", "GET", "POST", "DELETE"])
        path = rng.choice(paths)
        headers: dict[str, str] = {}
        if rng.random() < 0.35:
            headers["end-user"] = rng.choice(["jason", "alice", "Jason"])
        if rng.random() < 0.15:
            headers["x-block"] = rng.choice(["yes", "no"])
        if rng.random() < 0.14:
            headers["x-fault"] = rng.choice(["abort", "partial"])
        if rng.random() < 0.15:
            headers["x-canary"] = rng.choice(["true", "false"])
        out.append(Case(method, path, tuple(sorted(headers.items()))))
    return out


def observed(client: Sidecar, case: Case) -> tuple[bool, int, str | None]:
    """What real traffic did: allowed (not refused by a proxy), the status, the subset."""
    r = client.request("reviews:9080", case.path, headers=dict(case.headers), method=case.method)
    version = None
    refused = r.status_code == 403 and r.text == "RBAC: access denied"
    if r.status_code == 200:
        version = json.loads(r.text)["version"]
    return (not refused and r.status_code < 400), r.status_code, version


Prediction = tuple[bool, int, frozenset[str], tuple[str, ...]]


def predicted(mesh: Mesh, client: Sidecar, case: Case) -> Prediction:
    """Allowed, status, the subsets it may reach, and the faults that hit a share of
    requests (``50% of requests abort with 503``)."""
    cp = mesh.cp
    res = httpx.post(
        cp.url + kinds.proxy_explain_path("default", client.name),
        headers={"Authorization": f"Bearer {cp.token}"},
        json={
            "method": case.method,
            "url": f"http://reviews:9080{case.path}",
            "headers": dict(case.headers),
        },
        timeout=30,
    )
    assert res.status_code == 200, res.text
    verdict: dict[str, Any] = res.json()["verdict"]
    allowed = bool(verdict["allowed"])
    status = verdict["status"] or 200
    subsets = frozenset(verdict["subsets"] if allowed else ())
    return allowed, status, subsets, tuple(verdict.get("faults") or ())


def fault_abort(want: Prediction) -> int | None:
    """The status a share-of-requests abort the explainer predicts answers with."""
    for text in want[3]:
        if "% of requests abort with " in text:
            return int(text.rsplit(" ", 1)[1])
    return None


def agrees(want: Prediction, got: tuple[bool, int, str | None]) -> bool:
    """Same verdict and status; an allowed request reached one of the predicted subsets (a
    weighted split predicts several)."""
    if want[:2] != got[:2]:
        return False
    return got[2] in want[2] if want[0] else got[2] is None


def test_explain_matches_real_traffic(bookinfo: BookinfoMesh) -> None:
    pp = bookinfo.productpage
    intruder = bookinfo.intruder
    # every subset's proxy has the routes and policies (each gets its push on its own)
    settled(
        lambda: [
            observed(pp, Case("GET", "/", (("end-user", "jason"),))),
            observed(pp, Case("GET", "/v3", ())),
            observed(pp, Case("GET", "/", ())),
            observed(pp, Case("GET", "/admin", ())),
            observed(pp, Case("GET", "/v3", (("x-block", "yes"),))),
            *(observed(intruder, Case("GET", p, ())) for p in ("/", "/v3")),
            observed(intruder, Case("GET", "/", (("end-user", "jason"),))),
            observed(pp, Case("GET", "/", (("x-fault", "abort"),))),
        ],
        [
            (True, 200, "v2"),
            (True, 200, "v3"),
            (True, 200, "v1"),
            (False, 403, None),
            (False, 403, None),
            (False, 403, None),
            (False, 403, None),
            (False, 403, None),
            (False, 418, None),
        ],
        "routing and policies in force on every subset",
    )
    cases = generated_cases(240)
    mismatches = []
    outcomes: set[tuple[bool, int, str | None]] = set()
    fault_hits = 0
    for client in (pp, bookinfo.intruder):
        for case in cases if client is pp else cases[:60]:
            want = predicted(bookinfo.mesh, client, case)
            got = observed(client, case)
            outcomes.add(got)
            if fault_abort(want) is not None and got == (False, fault_abort(want), None):
                fault_hits += 1  # the share the fault aborts: not a mismatch
                continue
            if not agrees(want, got):
                mismatches.append((client.name, case, want, got))
    assert not mismatches, mismatches[:10]
    assert fault_hits > 0  # some generated requests met the 50% abort
    # a fault on 50% of requests: said as a share, the rest of the walk still holds, and
    # the share of a burst that real traffic saw aborted is plausible for 50%
    partial = Case("GET", "/", (("x-fault", "partial"),))
    want = predicted(bookinfo.mesh, pp, partial)
    assert want == (True, 200, frozenset({"v3"}), ("50% of requests abort with 503",))
    burst = [observed(pp, partial) for _ in range(80)]
    aborted = sum(1 for got in burst if got == (False, 503, None))
    assert all(got in ((False, 503, None), (True, 200, "v3")) for got in burst), burst
    assert 20 <= aborted <= 60, aborted  # binomial(80, 0.5): 40 +- 4.5 standard deviations
    # a weighted split is predicted as both subsets, and real traffic reaches both
    split = Case("GET", "/split", ())
    assert predicted(bookinfo.mesh, pp, split) == (True, 200, frozenset({"v1", "v2"}), ())
    assert {observed(pp, split)[2] for _ in range(60)} == {"v1", "v2"}
    # the generated requests reached every subset and every kind of decision
    assert {o[2] for o in outcomes} >= {"v1", "v2", "v3"}
    assert {o[1] for o in outcomes} >= {200, 403, 418}


def test_explain_names_the_policy_and_rule(bookinfo: BookinfoMesh) -> None:
    cp = bookinfo.mesh.cp
    res = cp.cli(
        "x", "explain", "--from", "productpage", "GET", "http://reviews:9080/reviews/1",
        "-H", "x-block: yes", "-o", "json",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["verdict"]["allowed"] is False and out["verdict"]["status"] == 403
    assert out["verdict"]["policy"] == "default/deny-admin" and out["verdict"]["rule"] == 1
    stages = [s["stage"] for s in out["client"]]
    assert stages[:5] == ["listener", "filterChain", "routeConfig", "virtualHost", "route"]
    assert stages[-1] == "cluster"
    server = out["servers"][0]
    chain = next(s for s in server["steps"] if s["stage"] == "filterChain")
    assert chain["peer"] == "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"

    res = cp.cli(
        "x", "explain", "--from", "productpage", "http://reviews:9080/", "-H", "end-user: jason"
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "GET http://reviews:9080/ from default/productpage"
    assert lines[-1] == "Verdict: ALLOWED by default/reviews-callers (rule 0); subsets: v2"
    assert any("outbound|9080|v2|reviews.default.svc.cluster.local" in ln for ln in lines)

    res = cp.cli("x", "explain", "--from", "nobody", "http://reviews:9080/")
    assert res.returncode != 0 and "is not connected" in res.stderr
