"""Command lines for users and pod processes (no root needed)."""

from __future__ import annotations

import pytest

from pilotfish.platform.local.process import pod_command, pod_env
from pilotfish.platform.local.users import groupadd_command, lookup_user, useradd_command


def test_useradd_command() -> None:
    argv = useradd_command("pilotfish-proxy", 1337)
    assert argv[0] == "useradd"
    assert "--system" in argv
    assert argv[argv.index("--gid") + 1] == "pilotfish-proxy"
    assert argv[argv.index("--uid") + 1] == "1337"
    assert argv[-1] == "pilotfish-proxy"
    assert "--uid" not in useradd_command("pilotfish-app")
    assert groupadd_command("pilotfish-proxy", 1337) == [
        "groupadd", "--system", "--gid", "1337", "pilotfish-proxy",
    ]  # fmt: skip
    assert groupadd_command("pilotfish-app") == ["groupadd", "--system", "pilotfish-app"]


def test_lookup_user() -> None:
    me = lookup_user("root")
    assert me is not None and me.uid == 0
    assert lookup_user("pilotfish-no-such-user") is None


def test_pod_command_wraps_netns_and_identity() -> None:
    assert pod_command("pf-a", ["envoy", "-c", "x"], 1337, 1338) == [
        "ip", "netns", "exec", "pf-a",
        "setpriv", "--reuid=1337", "--regid=1338", "--clear-groups", "--no-new-privs", "--",
        "envoy", "-c", "x",
    ]  # fmt: skip
    assert pod_command(None, ["true"]) == ["true"]
    assert pod_command("pf-a", ["true"]) == ["ip", "netns", "exec", "pf-a", "true"]


@pytest.mark.parametrize(("uid", "gid"), [(1, None), (None, 1)])
def test_pod_command_needs_uid_and_gid(uid: int | None, gid: int | None) -> None:
    with pytest.raises(ValueError, match="both uid and gid"):
        pod_command(None, ["true"], uid, gid)


def test_pod_command_rejects_empty() -> None:
    with pytest.raises(ValueError):
        pod_command(None, [])


def test_pod_env_is_explicit() -> None:
    env = pod_env({"FOO": "1", "HOME": "/app"})
    assert env["FOO"] == "1" and env["HOME"] == "/app"
    assert "PATH" in env
    assert not set(env) - {"FOO", "HOME", "PATH", "LANG"}


def test_a_bind_mount_wraps_the_user_switch_inside_the_pods_mount_namespace() -> None:
    from pilotfish.platform.local.process import BIND_AND_ENTER, pod_command

    cmd = pod_command("pf-a", ["python3", "app.py"], 1000, 1000, bind=("/root/x", "/run/p/w"))
    assert cmd[:8] == [
        "ip", "netns", "exec", "pf-a", "/bin/sh", "-c", BIND_AND_ENTER, "/root/x"
    ]  # fmt: skip
    assert cmd[8] == "/run/p/w" and cmd[9] == "setpriv" and cmd[-2:] == ["python3", "app.py"]
    with pytest.raises(ValueError, match="mount namespace"):
        pod_command(None, ["true"], bind=("/a", "/b"))
