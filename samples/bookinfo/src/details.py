"""Bookinfo ``details``: the book's publishing details as JSON.

Stands for Istio's ``examples-bookinfo-details-v1`` image. Standard library only, so that the
local pod runtime can run it as ``python3 samples/bookinfo/src/details.py`` under any user.
The HTTP server and its request log are in the sibling module ``bookinfo_http``.

Endpoints:
    GET /details/{id}   the details of book ``id`` (400 when ``id`` is not a number)
    GET /health         ``{"status": "Details is healthy"}``

Environment: ``PORT`` (default 9080; 0 picks a free one), ``BIND_ADDRESS`` (default
``0.0.0.0``), ``SERVICE_VERSION`` (shown in the log, default ``v1``). A port given as the first
command-line argument wins over ``PORT``, as with Istio's images.

One line per request is written to stdout.
"""

from __future__ import annotations

import os
import sys
from typing import Any
from urllib.parse import urlsplit

from bookinfo_http import Request, Response, ServerSettings, json_response, serve

SERVICE = "details"


# --- settings -------------------------------------------------------------------------------


class Settings(ServerSettings):
    """Everything the app reads from its environment, read once in ``main``: ``PORT``,
    ``BIND_ADDRESS`` and ``SERVICE_VERSION``."""


# --- pure part: request in, response out ----------------------------------------------------


def book_details(product_id: int) -> dict[str, Any]:
    """The details Istio's details service returns for every book."""
    return {
        "id": product_id,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    }


def handle(settings: Settings, request: Request) -> Response:
    """Route one request."""
    path = urlsplit(request.path).path
    if request.method != "GET":
        return json_response(405, {"error": f"method {request.method} not allowed"})
    if path == "/health":
        return json_response(200, {"status": "Details is healthy"})
    if path.startswith("/details/"):
        raw_id = path.rsplit("/", 1)[1]
        try:
            product_id = int(raw_id)
        except ValueError:
            return json_response(400, {"error": "please provide numeric product id"})
        return json_response(200, book_details(product_id))
    return json_response(404, {"error": f"{path} not found"})


def main() -> None:
    settings = Settings.from_env(os.environ, sys.argv)
    serve(SERVICE, settings, lambda request: handle(settings, request))


if __name__ == "__main__":
    main()
