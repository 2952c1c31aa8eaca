"""Bookinfo ``productpage``: the web page (and JSON API) that calls ``details`` and ``reviews``.

Stands for Istio's ``examples-bookinfo-productpage-v1`` image. Standard library only, so that the
local pod runtime can run it as ``python3 samples/bookinfo/src/productpage.py`` under any user.
The HTTP server, its request log and the calls out are in the sibling module ``bookinfo_http``.

Endpoints, as in Istio's sample:
    GET  /, /index.html                 an index page linking to the product page
    GET  /productpage                   the "Simple Bookstore App" page for book 0
    POST /login  (form: username)       signs the user in (session cookie), redirects back
    GET  /logout                        signs out, redirects back
    GET  /api/v1/products               the product list
    GET  /api/v1/products/{id}          details of a product (from ``details``)
    GET  /api/v1/products/{id}/reviews  reviews of a product (from ``reviews``)
    GET  /api/v1/products/{id}/ratings  ratings of a product (from ``ratings``)
    GET  /static/...                    the page's stylesheet
    GET  /health                        ``Product page is healthy``

Calls to ``details``, ``reviews`` and ``ratings`` time out after 3 s; ``reviews`` is tried a
second time when the first try fails (Istio keeps this on purpose for its fault-injection
task). The signed-in user is sent as ``end-user``; the trace headers Istio lists are copied from
the incoming request. Calls go straight to the service names: environment proxy settings are
ignored, the mesh sidecar captures the traffic.

Environment: ``DETAILS_URL``, ``REVIEWS_URL``, ``RATINGS_URL`` (defaults ``http://details:9080``
and so on; or Istio's ``<NAME>_HOSTNAME`` and ``SERVICES_DOMAIN``), ``SESSION_SECRET`` (signs
the session cookie; every replica must share it), ``PORT`` (default 9080; 0 picks a free one),
``BIND_ADDRESS`` (default ``0.0.0.0``), ``SERVICE_VERSION`` (shown in the log, default v1). A port
given as the first command-line argument wins over ``PORT``. One line per request is written to
stdout.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from html import escape
from http.cookies import CookieError, SimpleCookie
from typing import Any, Self
from urllib.parse import parse_qs, quote, urlsplit

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

SERVICE = "productpage"
TIMEOUT_SECONDS = 3.0
REVIEWS_TRIES = 2
SESSION_COOKIE = "session"

#: Headers copied from the incoming request to outgoing calls: Istio's list for its apps, and
#: for productpage also the credentials a request carries.
FORWARDED_HEADERS: tuple[str, ...] = (*PROPAGATED_HEADERS, "cookie", "authorization", "jwt")

DETAILS_UNAVAILABLE = "Sorry, product details are currently unavailable for this book."
REVIEWS_UNAVAILABLE = "Sorry, product reviews are currently unavailable for this book."
RATINGS_UNAVAILABLE = "Sorry, product ratings are currently unavailable for this book."

PRODUCTS: tuple[dict[str, Any], ...] = (
    {
        "id": 0,
        "title": "The Comedy of Errors",
        "descriptionHtml": (
            '<a href="https://en.wikipedia.org/wiki/The_Comedy_of_Errors">Wikipedia Summary</a>:'
            " The Comedy of Errors is one of <b>William Shakespeare's</b> early plays. It is his"
            " shortest and one of his most farcical comedies, with a major part of the humour"
            " coming from slapstick and mistaken identity, in addition to puns and word play."
        ),
    },
)


# --- settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings(ServerSettings):
    """Everything the app reads from its environment, read once in ``main``."""

    details_url: str = "http://details:9080"
    reviews_url: str = "http://reviews:9080"
    ratings_url: str = "http://ratings:9080"
    session_secret: str = "bookinfo-sample-session-key"

    @classmethod
    def from_env(cls, env: Mapping[str, str], argv: list[str] | None = None) -> Self:
        return replace(
            super().from_env(env, argv),
            details_url=service_url(env, "details"),
            reviews_url=service_url(env, "reviews"),
            ratings_url=service_url(env, "ratings"),
            session_secret=env.get("SESSION_SECRET") or cls.session_secret,
        )


# --- pure part: request in, response out ----------------------------------------------------


def html_response(status: int, page: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, page.encode(), "text/html; charset=utf-8", headers)


# Session: the user name, signed so that a client cannot pose as someone else by hand.


def _signature(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()[:32]


def session_cookie_value(secret: str, user: str) -> str:
    payload = base64.urlsafe_b64encode(user.encode()).decode().rstrip("=")
    return f"{payload}.{_signature(secret, payload)}"


def session_user(secret: str, cookie_header: str | None) -> str:
    """The signed-in user named by the request's cookies; empty when none or forged."""
    if not cookie_header:
        return ""
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(cookie_header)
    except CookieError:
        return ""
    morsel = cookies.get(SESSION_COOKIE)
    if morsel is None or "." not in morsel.value:
        return ""
    payload, signature = morsel.value.rsplit(".", 1)
    if not hmac.compare_digest(signature, _signature(secret, payload)):
        return ""
    try:
        return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    except ValueError:
        return ""


def forward_headers(incoming: Mapping[str, str], user: str) -> dict[str, str]:
    """Headers for outgoing calls: Istio's propagated list, and ``end-user`` when signed in."""
    headers = propagated_headers(incoming, FORWARDED_HEADERS)
    if user:
        headers["end-user"] = user
    return headers


# Data providers, as Istio's productpage has them.


def _get(
    fetch: Fetch, url: str, headers: Mapping[str, str], unavailable: str, tries: int = 1
) -> tuple[int, Any]:
    """The service's answer when it is 200, else its status (500 when none) and ``unavailable``."""
    status = 0
    for _ in range(tries):
        status, body = fetch(url, headers, TIMEOUT_SECONDS)
        if status == 200:
            return 200, body
    return status or 500, {"error": unavailable}


def get_details(
    settings: Settings, fetch: Fetch, product_id: str, headers: Mapping[str, str]
) -> tuple[int, Any]:
    url = f"{settings.details_url}/details/{quote(product_id)}"
    return _get(fetch, url, headers, DETAILS_UNAVAILABLE)


def get_reviews(
    settings: Settings, fetch: Fetch, product_id: str, headers: Mapping[str, str]
) -> tuple[int, Any]:
    url = f"{settings.reviews_url}/reviews/{quote(product_id)}"
    return _get(fetch, url, headers, REVIEWS_UNAVAILABLE, tries=REVIEWS_TRIES)


def get_ratings(
    settings: Settings, fetch: Fetch, product_id: str, headers: Mapping[str, str]
) -> tuple[int, Any]:
    url = f"{settings.ratings_url}/ratings/{quote(product_id)}"
    return _get(fetch, url, headers, RATINGS_UNAVAILABLE)


# Rendering. Each star is one line carrying ``glyphicon-star`` (or ``glyphicon-star-empty``)
# and nothing else on the page carries it, so ``grep glyphicon-star | wc -l`` counts stars.

STYLESHEET = """\
body { font-family: Helvetica, Arial, sans-serif; margin: 0; color: #333; }
.navbar { background: #222; color: #9d9d9d; padding: 10px 20px; display: flex;
  justify-content: space-between; align-items: center; }
.navbar a { color: #fff; text-decoration: none; }
.navbar-brand { font-size: 18px; }
.navbar form { margin: 0; }
.container-fluid { padding: 0 20px; }
.row { display: flex; flex-wrap: wrap; gap: 20px; }
.col-md-12 { flex: 1 1 100%; }
.col-md-6 { flex: 1 1 40%; }
.text-center { text-align: center; }
.text-primary { color: #337ab7; }
blockquote { border-left: 5px solid #eee; margin: 0 0 20px; padding: 10px 20px; }
blockquote small { display: block; color: #777; }
dt { font-weight: bold; margin-top: 6px; }
.glyphicon-star::before { content: "\\2605"; }
.glyphicon-star-empty::before { content: "\\2606"; }
.glyphicon-user::before { content: "\\263A"; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ddd; padding: 4px 8px; }
"""

_HEAD = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>Simple Bookstore App</title>
<link rel="stylesheet" href="static/bookinfo.css">
</head>
<body>
"""


def _navbar(user: str) -> str:
    if user:
        account = (
            '<p class="navbar-text navbar-right">\n'
            '  <i class="glyphicon glyphicon-user" aria-hidden="true"></i>\n'
            f'  <span style="padding-left: 5px;">{escape(user)} ( <a href="logout">sign out</a> )'
            "</span>\n</p>"
        )
    else:
        account = (
            '<form method="post" action="login" name="login_form">\n'
            '  <input type="text" name="username" id="username" placeholder="User Name">\n'
            '  <input type="password" name="passwd" placeholder="Password">\n'
            '  <button type="submit" class="btn btn-primary">Sign in</button>\n'
            "</form>"
        )
    return (
        '<nav class="navbar navbar-inverse navbar-static-top">\n'
        '<a class="navbar-brand" href="#">BookInfo Sample</a>\n'
        f"{account}\n</nav>\n"
    )


def render_stars(rating: Mapping[str, Any]) -> list[str]:
    """The lines showing one rating: full and empty stars out of five, in the rating's colour."""
    stars = rating.get("stars")
    if not isinstance(stars, int):
        return []
    full = max(0, min(5, stars))
    color = escape(str(rating.get("color", "black")))
    lines = [f'<font color="{color}" style="color: {color}">']
    lines += ['  <span class="glyphicon glyphicon-star"></span>'] * full
    lines += ['  <span class="glyphicon glyphicon-star-empty"></span>'] * (5 - full)
    lines.append("</font>")
    return lines


def _details_html(status: int, details: Any) -> list[str]:
    if status != 200 or not isinstance(details, dict):
        lines = ['<h4 class="text-center text-primary">Error fetching product details!</h4>']
        if isinstance(details, dict) and details.get("error"):
            lines.append(f"<p>{escape(str(details['error']))}</p>")
        return lines
    lines = ['<h4 class="text-center text-primary">Book Details</h4>', "<dl>"]
    for label, key in (
        ("Type", "type"),
        ("Pages", "pages"),
        ("Publisher", "publisher"),
        ("Language", "language"),
        ("ISBN-10", "ISBN-10"),
        ("ISBN-13", "ISBN-13"),
    ):
        lines.append(f"  <dt>{label}:</dt>{escape(str(details.get(key, '')))}")
    lines.append("</dl>")
    return lines


def _reviews_html(status: int, reviews: Any) -> list[str]:
    if status != 200 or not isinstance(reviews, dict):
        lines = ['<h4 class="text-center text-primary">Error fetching product reviews!</h4>']
        if isinstance(reviews, dict) and reviews.get("error"):
            lines.append(f"<p>{escape(str(reviews['error']))}</p>")
        return lines
    lines = ['<h4 class="text-center text-primary">Book Reviews</h4>']
    for review in reviews.get("reviews") or []:
        if not isinstance(review, dict):
            continue
        lines.append("<blockquote>")
        lines.append(f"  <p>{escape(str(review.get('text', '')))}</p>")
        lines.append(f"  <small>{escape(str(review.get('reviewer', '')))}</small>")
        rating = review.get("rating")
        if isinstance(rating, dict):
            if "stars" in rating:
                lines += render_stars(rating)
            elif rating.get("error"):
                lines.append(f"  <p><i>{escape(str(rating['error']))}</i></p>")
        lines.append("</blockquote>")
    return lines


def render_product_page(
    product: Mapping[str, Any],
    details_status: int,
    details: Any,
    reviews_status: int,
    reviews: Any,
    user: str,
) -> str:
    """The HTML of the product page, in the layout of Istio's page."""
    body = [
        _navbar(user),
        '<div class="container-fluid">',
        '<div class="row">',
        '<div class="col-md-12">',
        f'<h3 class="text-center text-primary">{escape(str(product["title"]))}</h3>',
        f"<p>Summary: {product['descriptionHtml']}</p>",
        "</div>",
        "</div>",
        '<div class="row">',
        '<div class="col-md-6">',
        *_details_html(details_status, details),
        "</div>",
        '<div class="col-md-6">',
        *_reviews_html(reviews_status, reviews),
        "</div>",
        "</div>",
        "</div>",
        "</body>",
        "</html>",
    ]
    return _HEAD + "\n".join(body) + "\n"


def render_index(settings: Settings) -> str:
    """The index page: which services the product page calls, and links to the page."""
    rows = "\n".join(
        f"<tr><td>{name}</td><td>{escape(url)}</td><td>{escape(children)}</td></tr>"
        for name, url, children in (
            ("productpage", f"http://{settings.bind}:{settings.port}", "details, reviews"),
            ("details", settings.details_url, ""),
            ("reviews", settings.reviews_url, "ratings"),
            ("ratings", settings.ratings_url, ""),
        )
    )
    return (
        _HEAD
        + '<div class="container-fluid">\n'
        + "<h3>Hello! This is a simple bookstore application made of four services:</h3>\n"
        + "<table>\n<tr><th>service</th><th>address</th><th>calls</th></tr>\n"
        + rows
        + "\n</table>\n"
        + "<p>Open the product page as a normal user or as a tester:</p>\n"
        + '<p><a href="productpage?u=normal">Normal user</a></p>\n'
        + '<p><a href="productpage?u=test">Test user</a></p>\n'
        + "</div>\n</body>\n</html>\n"
    )


def _redirect_back(request: Request, cookie: str) -> Response:
    target = request.headers.get("referer") or "productpage"
    page = f'<p>Redirecting to <a href="{escape(target)}">{escape(target)}</a>.</p>\n'
    return html_response(302, page, (("Location", target), ("Set-Cookie", cookie)))


def _api(settings: Settings, fetch: Fetch, request: Request, path: str, user: str) -> Response:
    parts = path.split("/")[4:]  # after /api/v1/products
    if not parts or parts == [""]:
        return json_response(200, list(PRODUCTS))
    headers = forward_headers(request.headers, user)
    product_id = parts[0]
    if len(parts) == 1:
        return json_response(*get_details(settings, fetch, product_id, headers))
    if len(parts) == 2 and parts[1] == "reviews":
        return json_response(*get_reviews(settings, fetch, product_id, headers))
    if len(parts) == 2 and parts[1] == "ratings":
        return json_response(*get_ratings(settings, fetch, product_id, headers))
    return json_response(404, {"error": f"{path} not found"})


def handle(settings: Settings, fetch: Fetch, request: Request) -> Response:
    """Route one request; ``fetch`` is the only way out to the other services."""
    path = urlsplit(request.path).path
    user = session_user(settings.session_secret, request.headers.get("cookie"))
    if request.method == "POST" and path == "/login":
        form = parse_qs(urlsplit(request.path).query)
        form.update(parse_qs(request.body.decode("utf-8", "replace")))
        name = (form.get("username") or [""])[0]
        value = session_cookie_value(settings.session_secret, name) if name else ""
        return _redirect_back(request, f"{SESSION_COOKIE}={value}; Path=/; HttpOnly")
    if request.method != "GET":
        return html_response(405, "<h1>Method Not Allowed</h1>\n")
    if path in ("/", "/index.html"):
        return html_response(200, render_index(settings))
    if path == "/health":
        return Response(200, b"Product page is healthy", "text/plain; charset=utf-8")
    if path == "/logout":
        expired = f"{SESSION_COOKIE}=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/"
        return _redirect_back(request, expired)
    if path == "/productpage":
        headers = forward_headers(request.headers, user)
        product = PRODUCTS[0]
        details_status, details = get_details(settings, fetch, str(product["id"]), headers)
        reviews_status, reviews = get_reviews(settings, fetch, str(product["id"]), headers)
        page = render_product_page(product, details_status, details, reviews_status, reviews, user)
        return html_response(200, page)
    if path == "/api/v1/products" or path.startswith("/api/v1/products/"):
        return _api(settings, fetch, request, path, user)
    if path.startswith("/static/"):
        if path == "/static/bookinfo.css":
            return Response(200, STYLESHEET.encode(), "text/css; charset=utf-8")
        return html_response(404, "<h1>Not Found</h1>\n")
    return html_response(404, "<h1>Not Found</h1>\n")


def main() -> None:
    settings = Settings.from_env(os.environ, sys.argv)
    serve(SERVICE, settings, lambda request: handle(settings, fetch_json, request))


if __name__ == "__main__":
    main()
