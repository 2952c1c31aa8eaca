"""EnvoyFilter on real traffic through real Envoys: the tutorials' local rate limit (shadow
mode as written, 429 with ``filter_enforced``, per-path descriptors), a cluster MERGE seen in
the config dump, virtual host and route patches, ``workloadSelector`` scoping, and a patch
Envoy rejects: NACKed by exactly the selected proxy, which keeps serving, healed by delete.

Extension configs over ECDS (Delta and SotW): an HTTP filter with ``config_discovery`` and
the EXTENSION_CONFIG it names change traffic, and a change of the extension config alone
reaches Envoy without a listener update. A BOOTSTRAP patch is in the bootstrap of a proxy
started after it, and only of the proxies it selects.

One mesh per module: a control plane, ``reviews`` and ``ratings`` behind sidecars and a
``productpage`` client. Each test applies its EnvoyFilter and deletes it at the end.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import _free_port
from tests.integration.harness import Mesh, Sidecar, eventually, start_control_plane

#: Written as ``$LRL`` in the YAML below (lines stay short).
LRL = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
SAMPLES = Path(__file__).resolve().parents[3] / "samples" / "tutorials"

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
"""


@dataclass
class World:
    mesh: Mesh
    client: Sidecar
    reviews: Sidecar
    ratings: Sidecar

    def apply(self, doc: dict[str, Any] | str) -> str:
        """Apply with the real CLI; returns what it printed on stderr (warnings)."""
        text = doc if isinstance(doc, str) else yaml.safe_dump(doc)
        res = self.mesh.cp.cli("apply", "-f", "-", input=text)
        assert res.returncode == 0, res.stderr
        return res.stderr

    def delete(self, name: str) -> None:
        self.mesh.cp.cli("delete", "envoyfilter", name, check=True)

    def delete_in(self, namespace: str, name: str) -> None:
        self.mesh.cp.cli("delete", "envoyfilter", name, "-n", namespace, check=True)

    def get(self, host: str, path: str = "/", **headers: str) -> httpx.Response:
        return self.client.request(f"{host}:9080", path, headers=headers)


def dump(sc: Sidecar, resource: str) -> str:
    url = f"http://127.0.0.1:{sc.admin_port}/config_dump?resource={resource}"
    return httpx.get(url, timeout=5).text


def stat(sc: Sidecar, pattern: str) -> int:
    """The sum of Envoy's counters whose name matches ``pattern`` (0 when there is none)."""
    text = httpx.get(f"http://127.0.0.1:{sc.admin_port}/stats", timeout=5).text
    total = 0
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if re.search(pattern, name) and value.strip().isdigit():
            total += int(value)
    return total


def statuses(w: World, host: str, n: int, path: str = "/") -> list[int]:
    return [w.get(host, path).status_code for _ in range(n)]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("envoyfilter")
    cp = start_control_plane(tmp / "data", tmp / "config", _free_port(), _free_port())
    mesh = Mesh(cp, tmp, _free_port)
    try:
        mesh.apply(SERVICES)
        reviews = mesh.add("reviews-v1", {"app": "reviews", "version": "v1"})
        ratings = mesh.add("ratings-v1", {"app": "ratings", "version": "v1"})
        client = mesh.add("productpage", {"app": "productpage"}, app_port=None)
        w = World(mesh, client, reviews, ratings)
        eventually(
            lambda: w.get("reviews").status_code == 200 and w.get("ratings").status_code == 200,
            30,
            "both services through the mesh",
        )
        yield w
    finally:
        mesh.stop()
        cp.kill(signal.SIGKILL)


def tutorial_rate_limit(
    app: str, sample: str = "envoy-filter-local-ratelimit.yaml", **extra: Any
) -> dict[str, Any]:
    """A rate limit sample as written, selecting ``app``, with ``extra`` fields in the
    filter's config."""
    body: dict[str, Any] = yaml.safe_load((SAMPLES / sample).read_text())
    body["spec"]["workloadSelector"]["labels"] = {"app": app}
    value = body["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["value"]
    value.update(extra)
    return body


def wait_for(sc: Sidecar, resource: str, marker: str, present: bool = True) -> None:
    eventually(
        lambda: (marker in dump(sc, resource)) == present,
        20,
        f"{marker} {'in' if present else 'gone from'} {sc.name}'s {resource}",
    )


def test_tutorial_rate_limit_as_written_counts_but_does_not_limit(world: World) -> None:
    body = tutorial_rate_limit("reviews")
    body["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["value"]["token_bucket"] = {
        "max_tokens": 5,
        "tokens_per_fill": 5,
        "fill_interval": "3600s",
    }
    warnings = world.apply(body)
    assert "filter_enforced" in warnings and "shadow mode" in warnings
    try:
        wait_for(world.reviews, "dynamic_listeners", "envoy.filters.http.local_ratelimit")
        before = stat(world.reviews, r"http_local_rate_limit\.rate_limited$")
        assert statuses(world, "reviews", 12) == [200] * 12
        # Over the budget of 5: counted as limited, never answered 429.
        assert stat(world.reviews, r"http_local_rate_limit\.rate_limited$") - before >= 6
        assert stat(world.reviews, r"http_local_rate_limit\.enforced$") == 0
    finally:
        world.delete("rate-limit")
    wait_for(world.reviews, "dynamic_listeners", "envoy.filters.http.local_ratelimit", False)


def test_rate_limit_with_filter_enforced_answers_429_on_the_selected_workload_only(
    world: World,
) -> None:
    body = tutorial_rate_limit(
        "reviews",
        "envoy-filter-local-ratelimit-enforced.yaml",
        token_bucket={"max_tokens": 5, "tokens_per_fill": 5, "fill_interval": "3600s"},
    )
    warnings = world.apply(body)
    assert "shadow mode" not in warnings
    try:
        wait_for(world.reviews, "dynamic_listeners", "envoy.filters.http.local_ratelimit")
        got = statuses(world, "reviews", 12)
        # The budget of 5 passes (Envoy's bucket may let one more through), then 429s only.
        allowed = got.count(200)
        assert 5 <= allowed <= 6 and got == [200] * allowed + [429] * (12 - allowed), got
        assert world.get("reviews").headers.get("x-local-rate-limit") == "true"
        # workloadSelector: ratings and the client carry no rate limit at all.
        assert statuses(world, "ratings", 10) == [200] * 10
        assert "local_ratelimit" not in dump(world.ratings, "dynamic_listeners")
        assert "local_ratelimit" not in dump(world.client, "dynamic_listeners")
    finally:
        world.delete("rate-limit")
    wait_for(world.reviews, "dynamic_listeners", "envoy.filters.http.local_ratelimit", False)
    # A pooled connection may still end on the draining old chain: wait for the new one.
    eventually(lambda: statuses(world, "reviews", 6) == [200] * 6, 20, "no limit any more")


DESCRIPTORS = """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: ratings-by-path}
spec:
  workloadSelector:
    labels: {app: ratings}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.local_ratelimit
        typed_config:
          "@type": type.googleapis.com/udpa.type.v1.TypedStruct
          type_url: $LRL
          value:
            stat_prefix: http_local_rate_limiter
  - applyTo: HTTP_ROUTE
    match:
      context: SIDECAR_INBOUND
      routeConfiguration:
        vhost:
          name: "inbound|http|9080"
          route: {action: ANY}
    patch:
      operation: MERGE
      value:
        route:
          rate_limits:
          - actions:
            - request_headers: {header_name: ":path", descriptor_key: path}
        typed_per_filter_config:
          envoy.filters.http.local_ratelimit:
            "@type": type.googleapis.com/udpa.type.v1.TypedStruct
            type_url: $LRL
            value:
              stat_prefix: http_local_rate_limiter
              token_bucket: {max_tokens: 100, tokens_per_fill: 100, fill_interval: 3600s}
              filter_enabled:
                runtime_key: local_rate_limit_enabled
                default_value: {numerator: 100, denominator: HUNDRED}
              filter_enforced:
                runtime_key: local_rate_limit_enforced
                default_value: {numerator: 100, denominator: HUNDRED}
              descriptors:
              - entries: [{key: path, value: /limited}]
                token_bucket: {max_tokens: 2, tokens_per_fill: 2, fill_interval: 3600s}
""".replace("$LRL", LRL)


def test_descriptor_rate_limit_limits_one_path_only(world: World) -> None:
    world.apply(DESCRIPTORS)
    try:
        wait_for(world.ratings, "dynamic_listeners", "/limited")
        got = statuses(world, "ratings", 8, "/limited")
        allowed = got.count(200)
        assert 2 <= allowed <= 3 and got == [200] * allowed + [429] * (8 - allowed), got
        assert statuses(world, "ratings", 8, "/other") == [200] * 8
    finally:
        world.delete("ratings-by-path")
    wait_for(world.ratings, "dynamic_listeners", "/limited", False)


CLUSTER_MERGE = """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: reviews-timeout}
spec:
  workloadSelector:
    labels: {app: productpage}
  configPatches:
  - applyTo: CLUSTER
    match:
      context: SIDECAR_OUTBOUND
      cluster: {service: reviews.default.svc.cluster.local, portNumber: 9080}
    patch:
      operation: MERGE
      value: {connect_timeout: 1.234s}
"""


def clusters(sc: Sidecar) -> dict[str, dict[str, Any]]:
    data = json.loads(dump(sc, "dynamic_active_clusters"))
    return {c["cluster"]["name"]: c["cluster"] for c in data["configs"]}


def test_cluster_merge_shows_in_the_config_dump_of_the_selected_proxy(world: World) -> None:
    name = "outbound|9080||reviews.default.svc.cluster.local"
    other = "outbound|9080||ratings.default.svc.cluster.local"
    world.apply(CLUSTER_MERGE)
    try:
        eventually(
            lambda: clusters(world.client)[name].get("connect_timeout") == "1.234s",
            20,
            "the merged connect timeout",
        )
        assert clusters(world.client)[other].get("connect_timeout") != "1.234s"
        assert clusters(world.reviews)[name].get("connect_timeout") != "1.234s"
        assert world.get("reviews").status_code == 200
    finally:
        world.delete("reviews-timeout")
    eventually(
        lambda: clusters(world.client)[name].get("connect_timeout") != "1.234s",
        20,
        "the default connect timeout back",
    )


ROUTE_PATCHES = """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: client-routes}
spec:
  workloadSelector:
    labels: {app: productpage}
  configPatches:
  - applyTo: VIRTUAL_HOST
    match:
      context: SIDECAR_OUTBOUND
      routeConfiguration:
        portNumber: 9080
        vhost: {name: "reviews.default.svc.cluster.local:9080"}
    patch:
      operation: MERGE
      value:
        response_headers_to_add:
        - header: {key: x-patched-vhost, value: reviews}
  - applyTo: HTTP_ROUTE
    match:
      context: SIDECAR_OUTBOUND
      routeConfiguration:
        vhost: {name: "reviews.default.svc.cluster.local:9080"}
    patch:
      operation: INSERT_FIRST
      value:
        name: teapot
        match: {prefix: /teapot}
        direct_response: {status: 418, body: {inline_string: short and stout}}
"""


def test_virtual_host_and_route_patches_change_the_clients_traffic(world: World) -> None:
    world.apply(ROUTE_PATCHES)
    try:
        eventually(
            lambda: world.get("reviews", "/teapot").status_code == 418, 20, "the teapot route"
        )
        r = world.get("reviews", "/teapot")
        assert r.text == "short and stout"
        ok = world.get("reviews", "/")
        assert ok.status_code == 200 and ok.headers.get("x-patched-vhost") == "reviews"
        # Other virtual hosts are untouched.
        other = world.get("ratings", "/teapot")
        assert other.status_code == 200 and "x-patched-vhost" not in other.headers
    finally:
        world.delete("client-routes")
    eventually(lambda: world.get("reviews", "/teapot").status_code == 200, 20, "routes back")


# ADD appends an HTTP filter, as in Istio: after the router, which Envoy refuses (the router
# must be the last filter), so the listener update carrying it is NACKed.
REJECTED = """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: broken}
spec:
  workloadSelector:
    labels: {app: ratings}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        filterChain:
          filter: {name: envoy.filters.network.http_connection_manager}
    patch:
      operation: ADD
      value:
        name: envoy.filters.http.local_ratelimit
        typed_config:
          "@type": $LRL
          stat_prefix: after_router
""".replace("$LRL", LRL)


def lds_states(w: World) -> dict[str, str]:
    out = w.mesh.cp.cli("proxy-status", "-o", "json", check=True).stdout
    return {
        p["pod_name"]: ((p.get("types") or {}).get("LDS") or {}).get("state", "")
        for p in json.loads(out)["items"]
    }


def test_rejected_patch_is_a_nack_on_the_selected_proxy_only_and_delete_heals(
    world: World,
) -> None:
    world.apply(REJECTED)
    try:
        eventually(lambda: lds_states(world).get("ratings-v1") == "NACKED", 20, "ratings' LDS NACK")
        states = lds_states(world)
        assert states["reviews-v1"] == "SYNCED" and states["productpage"] == "SYNCED", states
        text = world.mesh.cp.cli("proxy-status", check=True).stdout
        assert "ratings-v1.default LDS rejected (NACK)" in text
        # The last good config keeps serving.
        assert statuses(world, "ratings", 5) == [200] * 5
        data = json.loads(dump(world.ratings, "dynamic_listeners"))
        active = json.dumps([c.get("active_state") for c in data["configs"]])
        failed = json.dumps([c.get("error_state") for c in data["configs"]])
        assert "after_router" not in active and "after_router" in failed
    finally:
        world.delete("broken")
    eventually(lambda: lds_states(world).get("ratings-v1") == "SYNCED", 20, "ratings healed")
    assert statuses(world, "ratings", 3) == [200] * 3


GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [app.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app}
spec:
  hosts: [app.example.com]
  gateways: [web]
  http:
  - route: [{destination: {host: reviews}}]
"""

# In the root namespace, without a selector: every proxy of the mesh. The gateway patch names
# the Gateway server port (80), which the gateway binds elsewhere.
MESH_WIDE = """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: mesh-wide, namespace: istio-system}
spec:
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: GATEWAY
      listener:
        portNumber: 80
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter: {name: envoy.filters.http.router}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.local_ratelimit
        typed_config:
          "@type": $LRL
          stat_prefix: gateway_limit
          token_bucket: {max_tokens: 2, tokens_per_fill: 2, fill_interval: 3600s}
          filter_enabled: {default_value: {numerator: 100}}
          filter_enforced: {default_value: {numerator: 100}}
  - applyTo: VIRTUAL_HOST
    match:
      context: SIDECAR_OUTBOUND
    patch:
      operation: MERGE
      value:
        response_headers_to_add:
        - header: {key: x-mesh-wide, value: "yes"}
""".replace("$LRL", LRL)


def test_root_namespace_filter_reaches_gateways_and_sidecars_by_context(world: World) -> None:
    gw = world.mesh.add(
        "ingressgateway",
        {"istio": "ingressgateway"},
        namespace="istio-system",
        proxy_type="router",
        gateway_ports=(80,),
    )
    assert gw.gateway_ports is not None
    url = f"http://{gw.ip}:{gw.gateway_ports[80]}/"

    def via_gateway() -> int:
        return httpx.get(url, headers={"Host": "app.example.com"}, timeout=10).status_code

    world.apply(GATEWAY)
    eventually(lambda: via_gateway() == 200, 30, "the gateway route")
    world.apply(MESH_WIDE)
    try:
        wait_for(gw, "dynamic_listeners", "gateway_limit")
        got = [via_gateway() for _ in range(8)]
        allowed = got.count(200)
        assert 2 <= allowed <= 3 and got == [200] * allowed + [429] * (8 - allowed), got
        eventually(
            lambda: world.get("ratings").headers.get("x-mesh-wide") == "yes", 20, "mesh-wide"
        )
        # Context GATEWAY only: no sidecar limits.
        assert statuses(world, "reviews", 6) == [200] * 6
        assert "gateway_limit" not in dump(world.reviews, "dynamic_listeners")
    finally:
        world.delete_in("istio-system", "mesh-wide")
        world.mesh.cp.cli("delete", "-f", "-", input=GATEWAY)
    eventually(lambda: "x-mesh-wide" not in world.get("ratings").headers, 20, "header gone")


HEADER_MUTATION = (
    "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"
)


def ecds_pair(app: str, value: str) -> dict[str, Any]:
    """Istio's ECDS pair for ``app``'s outbound traffic: an HTTP filter that takes its config
    from extension config discovery over ADS, and the EXTENSION_CONFIG that is that config (a
    response header carrying ``value``)."""
    return {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {"name": "ecds-header"},
        "spec": {
            "workloadSelector": {"labels": {"app": app}},
            "configPatches": [
                {
                    "applyTo": "HTTP_FILTER",
                    "match": {
                        "context": "SIDECAR_OUTBOUND",
                        "listener": {
                            "filterChain": {
                                "filter": {"name": "envoy.filters.network.http_connection_manager"}
                            }
                        },
                    },
                    "patch": {
                        "operation": "INSERT_FIRST",
                        "value": {
                            "name": "ecds-header",
                            "config_discovery": {
                                "config_source": {"ads": {}},
                                "type_urls": [HEADER_MUTATION],
                            },
                        },
                    },
                },
                {
                    "applyTo": "EXTENSION_CONFIG",
                    "patch": {
                        "operation": "ADD",
                        "value": {
                            "name": "ecds-header",
                            "typed_config": {
                                "@type": HEADER_MUTATION,
                                "mutations": {
                                    "response_mutations": [
                                        {"append": {"header": {"key": "x-ecds", "value": value}}}
                                    ]
                                },
                            },
                        },
                    },
                },
            ],
        },
    }


def listener_versions(sc: Sidecar) -> dict[str, str]:
    data = json.loads(dump(sc, "dynamic_listeners"))
    return {
        c["name"]: (c.get("active_state") or {}).get("version_info", "") for c in data["configs"]
    }


def type_state(w: World, pod: str, short: str) -> str:
    out = w.mesh.cp.cli("proxy-status", "-o", "json", check=True).stdout
    for p in json.loads(out)["items"]:
        if p["pod_name"] == pod:
            return str(((p.get("types") or {}).get(short) or {}).get("state", ""))
    return ""


@pytest.mark.parametrize("xds_api", ["delta", "sotw"])
def test_extension_config_over_ecds_changes_traffic_without_a_listener_update(
    world: World, xds_api: str
) -> None:
    # The module's client runs Delta xDS; a second client runs State of the World.
    app = "productpage" if xds_api == "delta" else "ecds-sotw"
    client = (
        world.client
        if xds_api == "delta"
        else world.mesh.add(app, {"app": app}, app_port=None, xds_api="sotw")
    )

    def header() -> str | None:
        return client.request("reviews:9080", "/").headers.get("x-ecds")

    warnings = world.apply(ecds_pair(app, "one"))
    assert "EXTENSION_CONFIG" not in warnings
    try:
        eventually(lambda: header() == "one", 20, "the header of the first extension config")
        assert type_state(world, client.name, "ECDS") == "SYNCED"
        assert "x-ecds" in dump(client, "ecds_filters")
        # Other proxies have neither the filter nor the config.
        assert "ecds-header" not in dump(world.reviews, "dynamic_listeners")
        assert "x-ecds" not in dump(world.reviews, "ecds_filters")
        before = listener_versions(client)
        # Only the extension config changes: Envoy takes it over ECDS, no listener update.
        world.apply(ecds_pair(app, "two"))
        eventually(lambda: header() == "two", 20, "the header of the changed extension config")
        assert listener_versions(client) == before
        assert type_state(world, client.name, "ECDS") == "SYNCED"
    finally:
        world.delete("ecds-header")
    eventually(lambda: header() is None, 20, "no header once the EnvoyFilter is gone")


BOOTSTRAP = """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: bootstrap-stats}
spec:
  workloadSelector:
    labels: {app: boot}
  configPatches:
  - applyTo: BOOTSTRAP
    patch:
      operation: MERGE
      value:
        stats_config:
          stats_tags:
          - tag_name: patched_tag
            regex: "^patched\\\\.((.+?)\\\\.)"
        static_resources:
          clusters:
          - name: bootstrap-patched
            type: STATIC
            connect_timeout: 1s
            load_assignment:
              cluster_name: bootstrap-patched
              endpoints:
              - lb_endpoints:
                - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9}}}
"""


def test_bootstrap_patch_is_in_the_bootstrap_of_a_selected_proxy_started_after_it(
    world: World, tmp_path: Path
) -> None:
    from pilotfish.api.bootstrap_patch import bootstrap_patches

    warnings = world.apply(BOOTSTRAP)
    assert "take effect when a selected proxy starts" in warnings
    try:
        # What the runtime does for a starting pod: the stored EnvoyFilters that select it.
        listed = world.mesh.cp.cli("get", "envoyfilter", "-o", "json", check=True).stdout
        items = json.loads(listed)["items"]
        patches = bootstrap_patches(
            items, root_namespace="istio-system", namespace="default", labels={"app": "boot"}
        )
        assert len(patches) == 1
        assert not bootstrap_patches(
            items, root_namespace="istio-system", namespace="default", labels={"app": "x"}
        )
        path = tmp_path / "bootstrap-patches.json"
        path.write_text(json.dumps(patches))
        boot = world.mesh.add(
            "boot", {"app": "boot"}, app_port=None, extra_args=("--bootstrap-patches", str(path))
        )
        static = json.loads(dump(boot, "static_clusters"))
        names = [c["cluster"]["name"] for c in static["configs"]]
        assert "bootstrap-patched" in names and "xds-grpc" in names
        text = httpx.get(f"http://127.0.0.1:{boot.admin_port}/config_dump", timeout=5).text
        assert "patched_tag" in text
        # The proxy still gets its config over xDS and routes.
        eventually(
            lambda: boot.request("reviews:9080", "/").status_code == 200, 20, "boot's routes"
        )
        assert "bootstrap-patched" not in dump(world.client, "static_clusters")
    finally:
        world.delete("bootstrap-stats")
