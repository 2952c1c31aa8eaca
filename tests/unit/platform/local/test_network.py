"""Pod network: settings, names, address allocation, ip batches, host rules, cleanup selection."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from pilotfish.platform.local.commands import PlatformError
from pilotfish.platform.local.network import (
    IpAllocator,
    PodNetworkSettings,
    bridge_batch,
    forward_rules,
    has_forward_jump,
    host_cleanup_rules,
    links_to_delete,
    mac_for,
    parse_netns_list,
    pod_inner_batch,
    pod_outer_batch,
)

IP = ipaddress.IPv4Address


def test_defaults_and_derived_names() -> None:
    s = PodNetworkSettings()
    assert s.bridge_name == "pf0"
    assert str(s.gateway_ip) == "10.244.0.1"
    assert s.forward_chain == "PF-FORWARD"
    assert s.marker == "pilotfish:pf"
    assert s.netns_name("productpage-v1-0.default") == "pf-productpage-v1-0.default"
    assert s.veth_name(IP("10.244.1.2")) == "pf-0102"
    assert len(PodNetworkSettings(prefix="abcdefgh").veth_name(IP("10.244.255.254"))) <= 15


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prefix": "PF"}, "prefix"),
        ({"prefix": "toolongprefix"}, "prefix"),
        ({"prefix": "p-f"}, "prefix"),
        ({"bridge": "br0"}, "must start with the prefix"),
        ({"bridge": "pf-0001"}, "must start with the prefix"),
        ({"bridge": "pf0123456789abcd"}, "15 characters"),
        ({"pod_cidr": "10.0.0.0/8"}, "/16 to /29"),
        ({"pod_cidr": "10.244.0.1/24"}, "host bits set"),
        ({"pod_cidr": "fd00::/64"}, "only IPv4"),
        ({"gateway": "10.245.0.1"}, "not a host address"),
        ({"gateway": "10.244.0.0"}, "not a host address"),
        ({"service_cidr": "10.244.128.0/20"}, "overlaps"),
    ],
)
def test_invalid_settings(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PodNetworkSettings(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("pod_id", ["", "A", "-a", "a-", "a/b", "a b", "x" * 201])
def test_invalid_pod_ids(pod_id: str) -> None:
    with pytest.raises(ValueError, match="pod id"):
        PodNetworkSettings().netns_name(pod_id)


def test_mac_is_derived_from_the_address() -> None:
    assert mac_for(IP("10.244.0.7")) == "0a:58:0a:f4:00:07"


def test_allocator_is_stable_and_reuses_released_addresses() -> None:
    net = ipaddress.IPv4Network("10.1.2.0/29")  # hosts .1-.6
    alloc = IpAllocator(net, [IP("10.1.2.1")])
    a, b = alloc.allocate("a"), alloc.allocate("b")
    assert (str(a), str(b)) == ("10.1.2.2", "10.1.2.3")
    assert alloc.allocate("a") == a
    alloc.release("a")
    assert alloc.owner(a) is None
    assert alloc.allocate("c") == a  # lowest free address is reused
    assert alloc.allocate("a") == IP("10.1.2.4")  # its old one is taken now
    alloc.release("b")
    alloc.release("a")
    assert alloc.allocate("b") == b  # a pod gets its previous address back when free
    assert alloc.allocate("d") == IP("10.1.2.4")
    assert alloc.allocate("e") == IP("10.1.2.5")
    assert alloc.allocate("f") == IP("10.1.2.6")
    with pytest.raises(PlatformError, match=r"pod g: no free address left in 10\.1\.2\.0/29"):
        alloc.allocate("g")


def test_allocator_reserve() -> None:
    alloc = IpAllocator(ipaddress.IPv4Network("10.1.2.0/24"), [IP("10.1.2.1")])
    alloc.reserve("x", IP("10.1.2.2"))
    assert alloc.allocate("y") == IP("10.1.2.3")
    with pytest.raises(ValueError, match="already allocated to pod x"):
        alloc.reserve("z", IP("10.1.2.2"))
    with pytest.raises(ValueError, match="not a pod address"):
        alloc.reserve("z", IP("10.1.2.1"))


def test_ip_batches() -> None:
    s = PodNetworkSettings(prefix="t1", pod_cidr="10.250.3.0/24", service_cidr="10.96.0.0/16")
    assert bridge_batch(s, exists=False)[0] == "link add t10 type bridge"
    assert bridge_batch(s, exists=True)[0] == "link set t10 alias pilotfish:t1"
    assert "addr replace 10.250.3.1/24 dev t10" in bridge_batch(s, exists=True)
    assert pod_outer_batch(s, "t1-a", "t1-0002") == [
        "netns add t1-a",
        "link add t1-0002 type veth peer name eth0 netns t1-a",
        "link set t1-0002 alias pilotfish:t1",
        "link set t1-0002 master t10",
        "link set t1-0002 up",
    ]
    assert pod_inner_batch(s, IP("10.250.3.2")) == [
        "link set lo up",
        "link set eth0 address 0a:58:0a:fa:03:02",
        "link set eth0 up",
        "addr add 10.250.3.2/24 dev eth0",
        "route add default via 10.250.3.1 dev eth0",
        "route add 10.96.0.0/16 dev eth0 scope link",
    ]


def test_forward_rules() -> None:
    s = PodNetworkSettings()
    script = forward_rules(s, add_jump=True)
    assert script.splitlines() == [
        "*filter",
        ":PF-FORWARD - [0:0]",
        '-A PF-FORWARD -i pf0 -m comment --comment "pilotfish:pf" -j ACCEPT',
        '-A PF-FORWARD -o pf0 -m comment --comment "pilotfish:pf" -j ACCEPT',
        '-I FORWARD 1 -m comment --comment "pilotfish:pf" -j PF-FORWARD',
        "COMMIT",
    ]
    assert "-I FORWARD" not in forward_rules(s, add_jump=False)


HOST_SAVE = """# Generated by iptables-nft-save v1.8.9 (nf_tables)
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:PF-FORWARD - [0:0]
:PF0-FORWARD - [0:0]
-A FORWARD -m comment --comment "pilotfish:pf" -j PF-FORWARD
-A FORWARD -m comment --comment "pilotfish:pf0" -j PF0-FORWARD
-A FORWARD -i docker0 -j ACCEPT
-A PF-FORWARD -i pf0 -m comment --comment "pilotfish:pf" -j ACCEPT
-A PF-FORWARD -o pf0 -m comment --comment "pilotfish:pf" -j ACCEPT
-A PF0-FORWARD -i pf00 -m comment --comment "pilotfish:pf0" -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 10.244.0.0/16 -m comment --comment pilotfish:pf -j MASQUERADE
-A POSTROUTING -s 172.17.0.0/16 -j MASQUERADE
COMMIT
"""


def test_has_forward_jump() -> None:
    assert has_forward_jump(HOST_SAVE, PodNetworkSettings())
    assert not has_forward_jump(HOST_SAVE, PodNetworkSettings(prefix="other"))


def test_host_cleanup_rules_touch_only_this_prefix() -> None:
    script = host_cleanup_rules(HOST_SAVE, PodNetworkSettings())
    assert script.splitlines() == [
        "*filter",
        '-D FORWARD -m comment --comment "pilotfish:pf" -j PF-FORWARD',
        "-F PF-FORWARD",
        "-X PF-FORWARD",
        "COMMIT",
        "*nat",
        "-D POSTROUTING -s 10.244.0.0/16 -m comment --comment pilotfish:pf -j MASQUERADE",
        "COMMIT",
    ]
    assert host_cleanup_rules(HOST_SAVE, PodNetworkSettings(prefix="other")) == ""


def test_parse_netns_list() -> None:
    assert parse_netns_list("pf-b (id: 3)\npf-a\n\n") == ["pf-b", "pf-a"]


def test_links_to_delete() -> None:
    links: list[dict[str, Any]] = [
        {"ifname": "lo", "linkinfo": None},
        {"ifname": "pf0", "linkinfo": {"info_kind": "bridge"}, "ifalias": "pilotfish:pf"},
        {"ifname": "pf-0002", "linkinfo": {"info_kind": "veth"}, "ifalias": "pilotfish:pf"},
        {"ifname": "pf-0003", "linkinfo": {"info_kind": "veth"}},  # alias lost: name pattern
        {"ifname": "pf-000g", "linkinfo": {"info_kind": "veth"}},
        {"ifname": "pf0-0002", "linkinfo": {"info_kind": "veth"}, "ifalias": "pilotfish:pf0"},
        {"ifname": "pf00", "linkinfo": {"info_kind": "bridge"}, "ifalias": "pilotfish:pf0"},
        {"ifname": "eth0", "linkinfo": {"info_kind": "veth"}},
    ]
    assert links_to_delete(links, PodNetworkSettings()) == ["pf-0002", "pf-0003", "pf0"]


def test_fail_closed_routes_cover_the_pod_and_service_ranges() -> None:
    from pilotfish.platform.local.network import (
        FAIL_CLOSED_METRIC,
        PodNetworkSettings,
        fail_closed_batch,
    )

    s = PodNetworkSettings(prefix="pq", pod_cidr="10.201.0.0/24", service_cidr="10.97.0.0/16")
    assert fail_closed_batch(s, add=True) == [
        f"route replace unreachable 10.201.0.0/24 metric {FAIL_CLOSED_METRIC}",
        f"route replace unreachable 10.97.0.0/16 metric {FAIL_CLOSED_METRIC}",
    ]
    assert fail_closed_batch(s, add=False)[0].startswith("route del unreachable 10.201.0.0/24")
