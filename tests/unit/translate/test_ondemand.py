"""Which clusters a sidecar gets on demand: outbound clusters no listener names."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2

from pilotfish.translate.listeners import tcp_proxy_filter
from pilotfish.translate.ondemand import on_demand_clusters

DB = "outbound|3306||db.default.svc.cluster.local"
DB_V1 = "outbound|3306|v1|db.default.svc.cluster.local"
REVIEWS = "outbound|9080||reviews.default.svc.cluster.local"
REVIEWS_V2 = "outbound|9080|v2|reviews.default.svc.cluster.local"


def test_clusters_named_by_listeners_stay_eager() -> None:
    clusters = {n: cluster_pb2.Cluster(name=n) for n in (DB, REVIEWS, REVIEWS_V2)}
    clusters["inbound|9080||"] = cluster_pb2.Cluster(name="inbound|9080||")
    clusters["PassthroughCluster"] = cluster_pb2.Cluster(name="PassthroughCluster")
    listener = listener_pb2.Listener(name="virtualOutbound")
    listener.filter_chains.add().filters.append(tcp_proxy_filter(DB, [(DB, 100)]))
    assert on_demand_clusters(clusters, [listener]) == {REVIEWS, REVIEWS_V2}


def test_a_name_that_prefixes_another_is_told_apart() -> None:
    # "db...local" named by a listener; the subset cluster of the same host is not.
    clusters = {n: cluster_pb2.Cluster(name=n) for n in (DB, DB_V1)}
    listener = listener_pb2.Listener(name="x")
    listener.filter_chains.add().filters.append(tcp_proxy_filter(DB_V1, [(DB_V1, 100)]))
    assert on_demand_clusters(clusters, [listener]) == {DB}
    assert on_demand_clusters(clusters, []) == {DB, DB_V1}
