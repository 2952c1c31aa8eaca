"""How the CLI prints resources and proxy configs (pure functions, no server)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from pilotfish.cli import output
from pilotfish.cli.proxy_config import cluster_rows, listener_rows, render, split_target

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def stamp(ago: timedelta) -> str:
    return (NOW - ago).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("secs", "text"),
    [(0, "0s"), (119, "119s"), (120, "2m"), (3599, "59m"), (3600, "1h"), (3660, "1h1m"),
     (10 * 3600 + 60, "10h"), (47 * 3600, "47h"), (48 * 3600, "2d")],
)  # fmt: skip
def test_ages_read_like_kubectl(secs: int, text: str) -> None:
    assert output.human_duration(secs) == text


def test_age_of_an_object_and_of_one_without_a_timestamp() -> None:
    o = {"metadata": {"creationTimestamp": stamp(timedelta(minutes=5))}}
    assert output.age(o, NOW) == "5m"
    assert output.age({"metadata": {}}, NOW) == "<unknown>"
    assert output.age({"metadata": {"creationTimestamp": "yesterday"}}, NOW) == "<unknown>"
    future = {"metadata": {"creationTimestamp": stamp(-timedelta(minutes=1))}}
    assert output.age(future, NOW) == "0s"


def test_table_pads_every_column_but_the_last_with_three_spaces() -> None:
    text = output.table([["NAME", "HOSTS", "AGE"], ["reviews", '["reviews"]', "5m"]])
    assert text.splitlines() == [
        "NAME      HOSTS         AGE",
        'reviews   ["reviews"]   5m',
    ]
    assert output.table([]) == ""


def test_virtual_services_show_gateways_and_hosts_as_istioctl() -> None:
    vs = {
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {"hosts": ["reviews", "reviews.example.com"], "gateways": ["bookinfo-gateway"]},
    }
    lines = output.resource_table("VirtualService", [vs], all_namespaces=True, wide=False)
    header, row = lines.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "GATEWAYS", "HOSTS", "AGE"]
    assert row.split() == [
        "default",
        "reviews",
        '["bookinfo-gateway"]',
        '["reviews","reviews.example.com"]',
        "<unknown>",
    ]


def test_services_and_wide_pods() -> None:
    svc = {
        "metadata": {"name": "reviews"},
        "spec": {
            "clusterIP": "10.96.0.7",
            "ports": [{"port": 9080}, {"port": 53, "protocol": "UDP"}],
        },
    }
    header, row = output.resource_table("Service", [svc], False, False).splitlines()
    assert header.split() == ["NAME", "TYPE", "CLUSTER-IP", "PORT(S)", "AGE"]
    assert row.split() == ["reviews", "ClusterIP", "10.96.0.7", "9080/TCP,53/UDP", "<unknown>"]
    pod = {
        "metadata": {"name": "reviews-v1-x", "labels": {"app": "reviews"}},
        "spec": {"containers": [{"name": "reviews"}]},
        "status": {
            "phase": "Running",
            "podIP": "10.230.1.5",
            "containerStatuses": [
                {"ready": True, "restartCount": 1},
                {"ready": False, "restartCount": 2},
            ],
        },
    }
    header, row = output.resource_table("Pod", [pod], False, True).splitlines()
    assert header.split() == [
        "NAME", "READY", "STATUS", "RESTARTS", "IP", "NODE", "LABELS", "AGE",
    ]  # fmt: skip
    assert row.split() == [
        "reviews-v1-x", "1/2", "Running", "3", "10.230.1.5", "local", "app=reviews", "<unknown>",
    ]  # fmt: skip


def test_dump_and_lists_as_kubectl_prints_them() -> None:
    items = [{"kind": "Namespace", "metadata": {"name": "default"}}]
    doc = output.as_list(items)
    assert json.loads(output.dump(doc, "json")) == {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": items,
    }
    text = output.dump(doc, "yaml")
    assert text.startswith("apiVersion: v1\nkind: List\n")  # key order kept
    assert yaml.safe_load(text) == doc


def test_proxy_config_names_clusters_by_istio_parts() -> None:
    rows = cluster_rows(
        [
            {"name": "outbound|9080|v1|reviews.default.svc.cluster.local", "type": "EDS"},
            {"name": "PassthroughCluster", "type": "ORIGINAL_DST"},
            {"name": "inbound|9080||", "eds_cluster_config": {"eds_config": {"ads": {}}}},
        ]
    )
    assert rows == [
        ["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE"],
        ["reviews.default.svc.cluster.local", "9080", "v1", "outbound", "EDS", "-"],
        ["PassthroughCluster", "-", "-", "-", "ORIGINAL_DST", "-"],
        ["", "9080", "-", "inbound", "EDS", "-"],
    ]


def test_proxy_config_listeners_one_row_per_filter_chain() -> None:
    listener = {
        "name": "virtualOutbound",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15001}},
        "default_filter_chain": {},
    }
    rows = listener_rows([listener])
    assert rows[0] == ["ADDRESSES", "PORT", "MATCH", "DESTINATION"]
    assert rows[1][:2] == ["0.0.0.0", "15001"]
    assert len(rows) == 2


def test_proxy_config_render_as_documents() -> None:
    config = {"clusters": [{"name": "BlackHoleCluster", "type": "STATIC"}]}
    assert json.loads(render("cluster", config, "json")) == config["clusters"]
    everything = yaml.safe_load(render("all", config, "yaml"))
    assert everything == {
        "clusters": config["clusters"],
        "listeners": [],
        "routes": [],
        "endpoints": [],
    }
    assert render("cluster", config, None).splitlines()[1].split() == [
        "BlackHoleCluster", "-", "-", "-", "STATIC", "-",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("target", "namespace", "expected"),
    [
        ("reviews-v1.bookinfo", None, ("bookinfo", "reviews-v1")),
        ("reviews-v1", None, ("default", "reviews-v1")),
        ("reviews-v1", "bookinfo", ("bookinfo", "reviews-v1")),
        ("a.b.c", None, ("c", "a.b")),
    ],
)
def test_proxy_targets_as_istioctl(
    target: str, namespace: str | None, expected: tuple[str, str]
) -> None:
    assert split_target(target, namespace) == expected
