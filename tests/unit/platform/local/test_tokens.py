"""Workload tokens shared by the pods of one service account (pure, fake clock)."""

from __future__ import annotations

from pilotfish.platform.local.tokens import SharedTokens


def test_pods_of_one_account_share_a_token_younger_than_a_quarter_of_its_life() -> None:
    now = [100.0]
    asked: list[tuple[str, str, int]] = []

    def source(namespace: str, account: str, ttl: int) -> str:
        asked.append((namespace, account, ttl))
        return f"token-{len(asked)}"

    tokens = SharedTokens(source, clock=lambda: now[0])
    first = tokens.get("shop", "default", 400)
    assert (first.token, first.issued_at) == ("token-1", 100.0)
    now[0] = 199.0  # younger than 400 / 4: the next pod gets the same token, issued at 100
    assert tokens.get("shop", "default", 400) == first
    assert tokens.get("shop", "cart", 400).token == "token-2"  # another account asks anew
    now[0] = 200.0  # a quarter of its life: a new one
    renewed = tokens.get("shop", "default", 400)
    assert (renewed.token, renewed.issued_at) == ("token-3", 200.0)
    assert asked == [("shop", "default", 400), ("shop", "cart", 400), ("shop", "default", 400)]
