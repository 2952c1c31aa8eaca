"""Per-pod hosts and resolv.conf: names per namespace, in-place rewrites."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotfish.platform.local.hosts import (
    EntryName,
    ServiceName,
    pod_etc_dir,
    remove_pod_dns,
    render_hosts,
    render_resolv_conf,
    write_in_place,
    write_pod_dns,
)

SERVICES = [
    ServiceName("reviews", "default", "10.96.0.12"),
    ServiceName("ratings", "default", "10.96.0.13"),
    ServiceName("reviews", "other", "10.96.1.12"),
]


def _entries(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            ip, *names = line.split()
            out[ip] = names
    return out


def test_short_names_only_in_own_namespace() -> None:
    hosts = _entries(render_hosts("productpage-v1-0", "10.244.0.7", "default", SERVICES))
    assert hosts["127.0.0.1"] == ["localhost"]
    assert hosts["10.244.0.7"] == ["productpage-v1-0"]
    assert hosts["10.96.0.12"] == [
        "reviews",
        "reviews.default",
        "reviews.default.svc",
        "reviews.default.svc.cluster.local",
    ]
    assert hosts["10.96.1.12"] == [
        "reviews.other",
        "reviews.other.svc",
        "reviews.other.svc.cluster.local",
    ]


def test_other_namespace_sees_the_other_short_name() -> None:
    hosts = _entries(render_hosts("p", "10.244.0.9", "other", SERVICES, domain_suffix="corp.local"))
    assert hosts["10.96.1.12"][0] == "reviews"
    assert hosts["10.96.1.12"][-1] == "reviews.other.svc.corp.local"
    assert hosts["10.96.0.12"][0] == "reviews.default"


def test_rendering_is_deterministic() -> None:
    assert render_hosts("p", "10.244.0.7", "default", SERVICES) == render_hosts(
        "p", "10.244.0.7", "default", list(reversed(SERVICES))
    )


def test_bad_vip_names_the_service() -> None:
    with pytest.raises(ValueError, match="Service default/x: VIP 'nope'"):
        render_hosts("p", "10.244.0.7", "default", [ServiceName("x", "default", "nope")])


def test_resolv_conf_search_path() -> None:
    text = render_resolv_conf("bookinfo")
    assert "search bookinfo.svc.cluster.local svc.cluster.local cluster.local" in text
    assert "nameserver 127.0.0.1" in text


def test_write_in_place_keeps_the_inode(tmp_path: Path) -> None:
    path = tmp_path / "ns" / "hosts"
    write_in_place(path, "a long first version\n" * 10)
    inode = path.stat().st_ino
    with path.open() as reader:  # like a process holding the bind-mounted file
        write_in_place(path, "short\n")
        assert reader.read() == "short\n"
    assert path.stat().st_ino == inode
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_write_and_remove_pod_dns(tmp_path: Path) -> None:
    directory = write_pod_dns("pf-a", "hosts\n", "resolv\n", root=tmp_path)
    assert directory == tmp_path / "pf-a"
    assert (directory / "hosts").read_text() == "hosts\n"
    assert (directory / "resolv.conf").read_text() == "resolv\n"
    remove_pod_dns("pf-a", root=tmp_path)
    remove_pod_dns("pf-a", root=tmp_path)
    assert not directory.exists()


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b"])
def test_pod_etc_dir_rejects_paths(bad: str) -> None:
    with pytest.raises(ValueError):
        pod_etc_dir(bad)


def test_service_entry_hosts_follow_export_to_and_never_shadow_a_service() -> None:
    entries = [
        EntryName("httpbin.org", "10.96.3.3", "default"),
        EntryName("private.example.com", "10.96.4.4", "team", (".",)),
        EntryName("reviews", "10.96.5.5", "default"),  # a Service of that name wins
    ]
    svc = ServiceName("reviews", "default", "10.96.0.10")
    seen = render_hosts("sleep-1", "10.244.0.2", "default", [svc], entries=entries)
    assert "10.96.3.3\thttpbin.org" in seen
    assert "private.example.com" not in seen
    assert "10.96.5.5" not in seen
    own = render_hosts("app-1", "10.244.0.3", "team", [], entries=entries)
    assert "10.96.4.4\tprivate.example.com" in own


def test_host_aliases_are_listed_as_the_kubelet_writes_them() -> None:
    out = render_hosts("p", "10.244.0.2", "default", [], aliases=[("10.1.2.3", ["a.test", "b"])])
    assert "10.1.2.3\ta.test b" in out.splitlines()


def test_dns_config_merges_as_the_kubelet_does() -> None:
    cfg = {
        "nameservers": ["10.0.0.53"],
        "searches": ["corp.test"],
        "options": [{"name": "ndots", "value": "2"}],
    }
    merged = render_resolv_conf("default", dns_config=cfg)
    assert merged.splitlines()[1:] == [
        "nameserver 127.0.0.1",
        "nameserver 10.0.0.53",
        "search default.svc.cluster.local svc.cluster.local cluster.local corp.test",
        "options ndots:2",
    ]
    alone = render_resolv_conf("default", dns_config=cfg, dns_policy="None")
    assert alone.splitlines()[1:] == ["nameserver 10.0.0.53", "search corp.test", "options ndots:2"]
