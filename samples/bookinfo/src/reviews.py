"""Bookinfo ``reviews``: two reviews of a book, with star ratings from ``ratings`` (v2, v3).

Stands for Istio's ``examples-bookinfo-reviews-v1/v2/v3`` images. Standard library only, so that
the local pod runtime can run it as ``python3 samples/bookinfo/src/reviews.py`` under any user.
The HTTP server, its request log and the calls out are in the sibling module ``bookinfo_http``.

Endpoints:
    GET /reviews/{id}   ``{"id": "0", "podname": ..., "clustername": ..., "reviews": [...]}``
    GET /health         ``{"status": "Reviews is healthy"}``

Versions, as in Istio's sample:
    v1  no ratings (does not call ``ratings``)
    v2  calls ``ratings`` with a 10 s timeout, black stars
    v3  calls ``ratings`` with a 2.5 s timeout, red stars
When ``ratings`` does not answer with 200, each review carries
``"rating": {"error": "Ratings service is currently unavailable"}``.

Environment: ``SERVICE_VERSION`` (v1, v2, v3; default v1), ``STAR_COLOR`` (default black for v2,
red for v3; the timeout follows the colour like Istio's app: 10 s for black, 2.5 s otherwise),
``ENABLE_RATINGS`` (true/false, overrides what the version implies), ``RATINGS_URL`` (default
``http://ratings:9080``; or ``RATINGS_HOSTNAME`` and ``SERVICES_DOMAIN`` as in Istio's app),
``HOSTNAME`` (reported as ``podname``), ``CLUSTER_NAME`` (reported as ``clustername``, "null"
when unset), ``PORT`` (default 9080; 0 picks a free one), ``BIND_ADDRESS`` (default ``0.0.0.0``).
A port given as the first command-line argument wins over ``PORT``.

The trace headers Istio lists and ``end-user`` are copied from the incoming request to the call
to ``ratings``. Calls go straight to the service name: environment proxy settings are ignored,
the mesh sidecar captures the traffic. One line per request is written to stdout.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Self
from urllib.parse import quote, urlsplit

from bookinfo_http import (
    PROPAGATED_HEADERS,
    Fetch,
    Request,
    Response,
    ServerSettings,
    fetch_json,
    json_response,
    propagated_headers,
    serve,
    service_url,
)

SERVICE = "reviews"

REVIEWS: tuple[tuple[str, str], ...] = (
    (
        "Reviewer1",
        "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!",
    ),
    (
        "Reviewer2",
        "Absolutely fun and entertaining. The play lacks thematic depth when compared to other"
        " plays by Shakespeare.",
    ),
)
RATINGS_UNAVAILABLE = "Ratings service is currently unavailable"


# --- settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings(ServerSettings):
    """Everything the app reads from its environment, read once in ``main``."""

    ratings_enabled: bool = False
    star_color: str = "black"
    ratings_url: str = "http://ratings:9080"
    podname: str = ""
    clustername: str = "null"

    @property
    def ratings_timeout(self) -> float:
        return 10.0 if self.star_color == "black" else 2.5

    @classmethod
    def from_env(cls, env: Mapping[str, str], argv: list[str] | None = None) -> Self:
        listen = super().from_env(env, argv)
        enable = env.get("ENABLE_RATINGS")
        ratings_enabled = listen.version != "v1" if enable is None else enable.lower() == "true"
        color = env.get("STAR_COLOR") or ("red" if listen.version == "v3" else "black")
        return replace(
            listen,
            ratings_enabled=ratings_enabled,
            star_color=color,
            ratings_url=service_url(env, "ratings"),
            podname=env.get("HOSTNAME") or socket.gethostname(),
            clustername=env.get("CLUSTER_NAME") or "null",
        )


# --- pure part: request in, response out ----------------------------------------------------


def forward_headers(incoming: Mapping[str, str]) -> dict[str, str]:
    """The headers of ``incoming`` (lower-case names) to copy to outgoing calls."""
    return propagated_headers(incoming, PROPAGATED_HEADERS)


def stars_from(status: int, body: Any) -> dict[str, int]:
    """Stars per reviewer from a ratings answer; empty when the answer is unusable."""
    if status != 200 or not isinstance(body, dict) or not isinstance(body.get("ratings"), dict):
        return {}
    return {k: v for k, v in body["ratings"].items() if isinstance(v, int)}


def reviews_body(settings: Settings, product_id: int, stars: dict[str, int]) -> dict[str, Any]:
    """The JSON document Istio's reviews service returns."""
    reviews: list[dict[str, Any]] = []
    for reviewer, text in REVIEWS:
        review: dict[str, Any] = {"reviewer": reviewer, "text": text}
        if settings.ratings_enabled:
            if reviewer in stars:
                review["rating"] = {"stars": stars[reviewer], "color": settings.star_color}
            else:
                review["rating"] = {"error": RATINGS_UNAVAILABLE}
        reviews.append(review)
    return {
        "id": str(product_id),
        "podname": settings.podname,
        "clustername": settings.clustername,
        "reviews": reviews,
    }


def handle(settings: Settings, fetch: Fetch, request: Request) -> Response:
    """Route one request; ``fetch`` is the only way out to ``ratings``."""
    path = urlsplit(request.path).path
    if request.method != "GET":
        return json_response(405, {"error": f"method {request.method} not allowed"})
    if path == "/health":
        return json_response(200, {"status": "Reviews is healthy"})
    if not path.startswith("/reviews/"):
        return json_response(404, {"error": f"{path} not found"})
    try:
        product_id = int(path.rsplit("/", 1)[1])
    except ValueError:
        return json_response(400, {"error": "please provide numeric product id"})
    stars: dict[str, int] = {}
    if settings.ratings_enabled:
        url = f"{settings.ratings_url}/ratings/{quote(str(product_id))}"
        status, body = fetch(url, forward_headers(request.headers), settings.ratings_timeout)
        stars = stars_from(status, body)
        if not stars:
            print(f"{SERVICE}: error: unable to contact {url}, got status {status}", flush=True)
    return json_response(200, reviews_body(settings, product_id, stars))


def main() -> None:
    settings = Settings.from_env(os.environ, sys.argv)
    serve(SERVICE, settings, lambda request: handle(settings, fetch_json, request))


if __name__ == "__main__":
    main()
