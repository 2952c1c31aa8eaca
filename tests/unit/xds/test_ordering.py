"""plan_push: the make-before-break order of one push."""

from __future__ import annotations

from pilotfish.xds.ordering import Send, Step, Subscription, plan_push
from pilotfish.xds.resources import SECRET_TYPE
from tests.unit.xds import builders as b

WILD = Subscription(wildcard=True)


def names(*n: str) -> Subscription:
    return Subscription(wildcard=False, names=frozenset(n))


SUBS = {
    b.CLUSTER_TYPE: WILD,
    b.ENDPOINT_TYPE: names("a", "b"),
    b.LISTENER_TYPE: WILD,
    b.ROUTE_TYPE: names("r"),
}
EDS_OF = {"a": "a", "b": "b", "c": "c"}


def test_nothing_changed_means_no_steps() -> None:
    have = {b.CLUSTER_TYPE: {"a": "1"}, b.ROUTE_TYPE: {"r": "1"}}
    assert plan_push(have, have, SUBS, EDS_OF) == []


def test_clusters_and_endpoints_come_before_listeners_and_routes() -> None:
    have = {
        b.CLUSTER_TYPE: {"a": "1"},
        b.ENDPOINT_TYPE: {"a": "1"},
        b.LISTENER_TYPE: {"l": "1"},
        b.ROUTE_TYPE: {"r": "1"},
    }
    want = {
        b.CLUSTER_TYPE: {"a": "1", "b": "1"},
        b.ENDPOINT_TYPE: {"a": "1", "b": "1"},
        b.LISTENER_TYPE: {"l": "2"},
        b.ROUTE_TYPE: {"r": "2"},
    }
    steps = plan_push(have, want, SUBS, EDS_OF)
    assert [s.type_urls for s in steps] == [
        (b.CLUSTER_TYPE, b.ENDPOINT_TYPE),
        (b.LISTENER_TYPE,),
        (b.ROUTE_TYPE,),
    ]
    assert steps[0].sends[0] == Send(b.CLUSTER_TYPE, frozenset({"b"}))


def test_modified_cluster_is_followed_by_its_unchanged_endpoints() -> None:
    have = {b.CLUSTER_TYPE: {"a": "1", "b": "1"}, b.ENDPOINT_TYPE: {"a": "1", "b": "1"}}
    want = {b.CLUSTER_TYPE: {"a": "2", "b": "1"}, b.ENDPOINT_TYPE: {"a": "1", "b": "1"}}
    [step] = plan_push(have, want, SUBS, EDS_OF)
    assert step.sends == (
        Send(b.CLUSTER_TYPE, frozenset({"a"})),
        Send(b.ENDPOINT_TYPE, frozenset({"a"})),
    )


def test_endpoint_only_change_is_one_eds_step() -> None:
    have = {b.ENDPOINT_TYPE: {"a": "1", "b": "1"}}
    want = {b.ENDPOINT_TYPE: {"a": "1", "b": "2"}}
    assert plan_push(have, want, SUBS, EDS_OF) == [Step((Send(b.ENDPOINT_TYPE, frozenset({"b"})),))]


def test_removed_cluster_goes_last_after_the_route_that_stopped_using_it() -> None:
    have = {b.CLUSTER_TYPE: {"a": "1", "b": "1"}, b.ROUTE_TYPE: {"r": "1"}}
    want = {b.CLUSTER_TYPE: {"b": "1"}, b.ROUTE_TYPE: {"r": "2"}}
    steps = plan_push(have, want, SUBS, EDS_OF)
    assert steps == [
        Step((Send(b.ROUTE_TYPE, frozenset({"r"})),)),
        Step((Send(b.CLUSTER_TYPE, frozenset(), frozenset({"a"})),), after_clean=True),
    ]


def test_secrets_first_and_unsubscribed_names_and_types_skipped() -> None:
    subs = {**SUBS, SECRET_TYPE: names("cert")}
    have: dict[str, dict[str, str]] = {}
    want = {
        SECRET_TYPE: {"cert": "1", "other": "1"},
        b.CLUSTER_TYPE: {"c": "1"},
        b.ENDPOINT_TYPE: {"c": "1"},  # not subscribed yet: Envoy asks after the cluster arrives
        b.ROUTE_TYPE: {"r": "1", "unused": "1"},
    }
    steps = plan_push(have, want, subs, EDS_OF)
    assert [s.sends for s in steps] == [
        (Send(SECRET_TYPE, frozenset({"cert"})),),
        (Send(b.CLUSTER_TYPE, frozenset({"c"})),),
        (Send(b.ROUTE_TYPE, frozenset({"r"})),),
    ]
    # A type the proxy never asked for is not pushed.
    assert plan_push({}, want, {b.ROUTE_TYPE: names("r")}, EDS_OF) == [
        Step((Send(b.ROUTE_TYPE, frozenset({"r"})),))
    ]


def test_delta_sends_the_endpoints_of_new_clusters_with_them() -> None:
    have = {b.CLUSTER_TYPE: {"a": "1", "b": "1"}, b.ENDPOINT_TYPE: {"a": "1", "b": "1"}}
    want = {
        b.CLUSTER_TYPE: {"a": "2", "b": "1", "c": "1"},
        b.ENDPOINT_TYPE: {"a": "1", "b": "1", "c": "1"},
    }
    [step] = plan_push(have, want, SUBS, EDS_OF, presend=True)
    # c is new and not subscribed yet: sent ahead; a is re-warmed under its subscription.
    assert step.sends == (
        Send(b.CLUSTER_TYPE, frozenset({"a", "c"})),
        Send(b.ENDPOINT_TYPE, frozenset({"a"}), unsubscribed=frozenset({"c"})),
    )
    # Without presend (SotW) Envoy asks for c's endpoints itself.
    [step] = plan_push(have, want, SUBS, EDS_OF)
    assert step.sends[1] == Send(b.ENDPOINT_TYPE, frozenset({"a"}))


def test_virtual_hosts_come_after_the_clusters_and_routes_and_before_cluster_removal() -> None:
    # VHDS: a virtual host that routes to a new cluster goes once the cluster is ACKed (and
    # after the route configs it belongs to); a removed one goes before the cluster it used.
    vhds = b.VIRTUAL_HOST_TYPE
    subs = {**SUBS, vhds: WILD}
    have = {
        b.CLUSTER_TYPE: {"a": "1", "b": "1"},
        b.ROUTE_TYPE: {"r": "1"},
        vhds: {"r/x:80": "1", "r/y:80": "1"},
    }
    want = {
        b.CLUSTER_TYPE: {"b": "1", "c": "1"},
        b.ROUTE_TYPE: {"r": "2"},
        vhds: {"r/x:80": "2", "r/z:80": "1"},
    }
    steps = plan_push(have, want, subs, EDS_OF)
    assert [s.type_urls for s in steps] == [
        (b.CLUSTER_TYPE,),
        (b.ROUTE_TYPE,),
        (vhds,),
        (b.CLUSTER_TYPE,),
    ]
    assert steps[2].sends == (Send(vhds, frozenset({"r/x:80", "r/z:80"}), frozenset({"r/y:80"})),)
    assert steps[3].after_clean


def test_covered_is_covers_for_every_name() -> None:
    names = {"a", "b", "c", "d"}
    for sub in (
        Subscription(False, frozenset({"a", "x"})),
        Subscription(True),
        Subscription(True, frozenset({"b"}), frozenset({"b", "c"})),
    ):
        assert sub.covered(names) == {n for n in names if sub.covers(n)}
