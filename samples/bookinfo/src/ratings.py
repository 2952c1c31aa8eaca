"""Bookinfo ``ratings``: the star ratings each reviewer gave a book, as JSON.

Stands for Istio's ``examples-bookinfo-ratings-v1`` image. Standard library only, so that the
local pod runtime can run it as ``python3 samples/bookinfo/src/ratings.py`` under any user.
The HTTP server and its request log are in the sibling module ``bookinfo_http``.

Endpoints:
    GET  /ratings/{id}   ``{"id": N, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}``
    POST /ratings/{id}   replace the ratings of book ``id`` with the JSON object in the body
    GET  /health         ``{"status": "Ratings is healthy"}``

``SERVICE_VERSION`` selects a behaviour like Istio's ratings image does: ``v1`` (default) keeps
ratings in memory; ``v-faulty`` answers half of the rating requests with 503; ``v-delayed``
delays half of them by 7 s; ``v-unavailable`` answers every rating request with 503.
Also read: ``PORT`` (default 9080; 0 picks a free one), ``BIND_ADDRESS`` (default ``0.0.0.0``).
A port given as the first command-line argument wins over ``PORT``.

One line per request is written to stdout.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from bookinfo_http import Request, Response, ServerSettings, json_response, serve

SERVICE = "ratings"
DEFAULT_RATINGS: dict[str, int] = {"Reviewer1": 5, "Reviewer2": 4}
DELAY_SECONDS = 7.0


# --- settings -------------------------------------------------------------------------------


class Settings(ServerSettings):
    """Everything the app reads from its environment, read once in ``main``: ``PORT``,
    ``BIND_ADDRESS`` and ``SERVICE_VERSION``."""


# --- pure part: request in, response out ----------------------------------------------------


class RatingsStore:
    """Ratings added with POST, per book; books without any get the default ratings."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._added: dict[int, dict[str, Any]] = {}

    def get(self, product_id: int) -> dict[str, Any]:
        with self._lock:
            ratings = self._added.get(product_id, DEFAULT_RATINGS)
            return {"id": product_id, "ratings": dict(ratings)}

    def put(self, product_id: int, ratings: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._added[product_id] = dict(ratings)
        return self.get(product_id)


def _product_id(path: str) -> int | None:
    try:
        return int(path.rsplit("/", 1)[1])
    except ValueError:
        return None


def handle(
    settings: Settings,
    store: RatingsStore,
    request: Request,
    coin: Callable[[], bool] = lambda: random.random() < 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> Response:
    """Route one request. ``coin`` and ``sleep`` drive the faulty and delayed versions."""
    path = urlsplit(request.path).path
    if path == "/health" and request.method == "GET":
        return json_response(200, {"status": "Ratings is healthy"})
    if not path.startswith("/ratings/"):
        return json_response(404, {"error": f"{path} not found"})
    product_id = _product_id(path)
    if product_id is None:
        return json_response(400, {"error": "please provide numeric product ID"})
    if request.method == "POST":
        try:
            ratings = json.loads(request.body or b"null")
        except ValueError:
            ratings = None
        if not isinstance(ratings, dict):
            return json_response(400, {"error": "please provide valid ratings JSON"})
        return json_response(200, store.put(product_id, ratings))
    if request.method != "GET":
        return json_response(405, {"error": f"method {request.method} not allowed"})
    unavailable = json_response(503, {"error": "Service unavailable"})
    if settings.version == "v-unavailable":
        return unavailable
    if settings.version == "v-faulty" and coin():
        return unavailable
    if settings.version == "v-delayed" and coin():
        sleep(DELAY_SECONDS)
    return json_response(200, store.get(product_id))


def main() -> None:
    settings = Settings.from_env(os.environ, sys.argv)
    store = RatingsStore()
    serve(SERVICE, settings, lambda request: handle(settings, store, request))


if __name__ == "__main__":
    main()
