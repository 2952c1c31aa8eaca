"""Fixtures for the Bookinfo sample tests: the apps as real processes, wired over loopback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.unit.samples.bookinfo_apps import App, running


@dataclass
class Bookinfo:
    """ratings, details, reviews v1/v2/v3 and one productpage per reviews version."""

    apps: dict[str, App] = field(default_factory=dict)

    def __getitem__(self, name: str) -> App:
        return self.apps[name]


@pytest.fixture(scope="module")
def bookinfo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bookinfo]:
    logs: Path = tmp_path_factory.mktemp("bookinfo-logs")
    result = Bookinfo()
    with ExitStack() as stack:
        ratings = stack.enter_context(running("ratings-v1", logs))
        details = stack.enter_context(running("details-v1", logs))
        result.apps.update({"ratings": ratings, "details": details})
        for version in ("v1", "v2", "v3"):
            reviews = stack.enter_context(
                running(f"reviews-{version}", logs, RATINGS_URL=ratings.url)
            )
            page = stack.enter_context(
                running(
                    "productpage-v1",
                    logs,
                    DETAILS_URL=details.url,
                    REVIEWS_URL=reviews.url,
                    RATINGS_URL=ratings.url,
                )
            )
            result.apps[f"reviews-{version}"] = reviews
            result.apps[f"productpage-{version}"] = page
        yield result


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """A client that ignores proxy settings and does not follow redirects."""
    with httpx.Client(trust_env=False, timeout=30.0) as client:
        yield client
