"""The Bookinfo apps as real processes: JSON shapes, the page, stars, failures, users, traces."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.unit.samples.bookinfo_apps import App, Recorder, recording, running
from tests.unit.samples.conftest import Bookinfo

REVIEW_TEXTS = {
    "Reviewer1": (
        "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"
    ),
    "Reviewer2": (
        "Absolutely fun and entertaining. The play lacks thematic depth when compared to other"
        " plays by Shakespeare."
    ),
}
FULL_STAR = '<span class="glyphicon glyphicon-star"></span>'
EMPTY_STAR = '<span class="glyphicon glyphicon-star-empty"></span>'
RATINGS_DOWN = "Ratings service is currently unavailable"
REVIEWS_DOWN = "Sorry, product reviews are currently unavailable for this book."


def star_lines(page: str) -> int:
    """What ``grep glyphicon-star | wc -l`` prints for the page."""
    return sum(1 for line in page.splitlines() if "glyphicon-star" in line)


# --- details, ratings, reviews --------------------------------------------------------------


def test_details_returns_the_book_details(bookinfo: Bookinfo, http: httpx.Client) -> None:
    url = bookinfo["details"].url
    answer = http.get(f"{url}/details/0")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {
        "id": 0,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    }
    assert http.get(f"{url}/details/7").json()["id"] == 7
    assert http.get(f"{url}/details/seven").status_code == 400
    assert http.get(f"{url}/health").json() == {"status": "Details is healthy"}


def test_ratings_returns_and_accepts_ratings(bookinfo: Bookinfo, http: httpx.Client) -> None:
    url = bookinfo["ratings"].url
    assert http.get(f"{url}/ratings/0").json() == {
        "id": 0,
        "ratings": {"Reviewer1": 5, "Reviewer2": 4},
    }
    posted = http.post(f"{url}/ratings/42", json={"Reviewer1": 1, "Reviewer2": 2})
    assert posted.status_code == 200
    assert http.get(f"{url}/ratings/42").json() == {
        "id": 42,
        "ratings": {"Reviewer1": 1, "Reviewer2": 2},
    }
    assert http.post(f"{url}/ratings/43", content=b"not json").status_code == 400
    assert http.get(f"{url}/ratings/x").status_code == 400
    assert http.get(f"{url}/health").json() == {"status": "Ratings is healthy"}


def test_reviews_v1_has_no_ratings(bookinfo: Bookinfo, http: httpx.Client) -> None:
    body = http.get(f"{bookinfo['reviews-v1'].url}/reviews/0").json()
    assert body["id"] == "0"
    assert body["podname"] == "reviews-v1-pod"
    assert body["clustername"] == "null"
    assert body["reviews"] == [{"reviewer": r, "text": t} for r, t in REVIEW_TEXTS.items()]
    health = http.get(f"{bookinfo['reviews-v1'].url}/health").json()
    assert health == {"status": "Reviews is healthy"}


def test_reviews_v1_does_not_call_ratings(tmp_path: Path, http: httpx.Client) -> None:
    with (
        recording(200, {"id": 0, "ratings": {"Reviewer1": 1}}) as ratings,
        running("reviews-v1", tmp_path, RATINGS_URL=ratings.url) as reviews,
    ):
        assert http.get(f"{reviews.url}/reviews/0").status_code == 200
        assert ratings.requests == []


@pytest.mark.parametrize(("version", "color"), [("v2", "black"), ("v3", "red")])
def test_reviews_v2_v3_carry_stars_from_ratings(
    bookinfo: Bookinfo, http: httpx.Client, version: str, color: str
) -> None:
    body = http.get(f"{bookinfo[f'reviews-{version}'].url}/reviews/0").json()
    assert list(body) == ["id", "podname", "clustername", "reviews"]
    assert body["podname"] == f"reviews-{version}-pod"
    assert body["reviews"] == [
        {
            "reviewer": "Reviewer1",
            "text": REVIEW_TEXTS["Reviewer1"],
            "rating": {"stars": 5, "color": color},
        },
        {
            "reviewer": "Reviewer2",
            "text": REVIEW_TEXTS["Reviewer2"],
            "rating": {"stars": 4, "color": color},
        },
    ]


# --- productpage ------------------------------------------------------------------------------


def test_productpage_shows_title_details_and_reviews(
    bookinfo: Bookinfo, http: httpx.Client
) -> None:
    answer = http.get(f"{bookinfo['productpage-v1'].url}/productpage")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    page = answer.text
    assert "<title>Simple Bookstore App</title>" in page
    assert "The Comedy of Errors" in page
    assert "Book Details" in page
    for value in ("paperback", "200", "PublisherA", "English", "1234567890", "123-1234567890"):
        assert value in page
    assert "Book Reviews" in page
    assert "The slapstick humour is refreshing!" in page
    assert "Reviewer2" in page
    assert 'action="login"' in page and 'name="username"' in page


def test_reviews_v1_page_has_no_stars(bookinfo: Bookinfo, http: httpx.Client) -> None:
    page = http.get(f"{bookinfo['productpage-v1'].url}/productpage?u=normal").text
    assert star_lines(page) == 0
    assert page.count("glyphicon-star") == 0


@pytest.mark.parametrize(("version", "color"), [("v2", "black"), ("v3", "red")])
def test_reviews_v2_v3_pages_show_coloured_stars(
    bookinfo: Bookinfo, http: httpx.Client, version: str, color: str
) -> None:
    page = http.get(f"{bookinfo[f'productpage-{version}'].url}/productpage").text
    assert star_lines(page) == 10  # 5 + 4 full, 1 empty, one per line as in Istio's page
    assert page.count("glyphicon-star") == 10
    assert page.count(FULL_STAR) == 9
    assert page.count(EMPTY_STAR) == 1
    assert page.count(f'<font color="{color}" style="color: {color}">') == 2
    other = "red" if color == "black" else "black"
    assert f"color: {other}" not in page


def test_index_health_and_static(bookinfo: Bookinfo, http: httpx.Client) -> None:
    url = bookinfo["productpage-v1"].url
    index = http.get(f"{url}/")
    assert index.status_code == 200
    assert 'href="productpage?u=normal"' in index.text
    assert http.get(f"{url}/index.html").status_code == 200
    assert http.get(f"{url}/health").text == "Product page is healthy"
    css = http.get(f"{url}/static/bookinfo.css")
    assert css.status_code == 200 and ".glyphicon-star" in css.text
    assert http.get(f"{url}/static/missing.js").status_code == 404
    assert http.get(f"{url}/nothing-here").status_code == 404


def test_json_api(bookinfo: Bookinfo, http: httpx.Client) -> None:
    url = bookinfo["productpage-v3"].url
    products = http.get(f"{url}/api/v1/products").json()
    assert [(p["id"], p["title"]) for p in products] == [(0, "The Comedy of Errors")]
    assert "William Shakespeare" in products[0]["descriptionHtml"]
    details = http.get(f"{url}/api/v1/products/0")
    assert details.status_code == 200 and details.json()["publisher"] == "PublisherA"
    reviews = http.get(f"{url}/api/v1/products/0/reviews").json()
    assert reviews["reviews"][0]["rating"] == {"stars": 5, "color": "red"}
    ratings = http.get(f"{url}/api/v1/products/0/ratings").json()
    assert ratings == {"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}
    bad = http.get(f"{url}/api/v1/products/abc")
    assert bad.status_code == 400
    assert bad.json() == {
        "error": "Sorry, product details are currently unavailable for this book."
    }


# --- failures ---------------------------------------------------------------------------------


def test_ratings_down_shows_ratings_unavailable(
    tmp_path: Path, http: httpx.Client, free_port: Callable[[], int], bookinfo: Bookinfo
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with (
        running("reviews-v2", tmp_path, RATINGS_URL=dead) as reviews,
        running(
            "productpage-v1", tmp_path, DETAILS_URL=bookinfo["details"].url, REVIEWS_URL=reviews.url
        ) as page,
    ):
        body = http.get(f"{reviews.url}/reviews/0").json()
        assert [r["rating"] for r in body["reviews"]] == [{"error": RATINGS_DOWN}] * 2
        html = http.get(f"{page.url}/productpage").text
        assert html.count(RATINGS_DOWN) == 2
        assert star_lines(html) == 0
        assert "Book Reviews" in html


def test_reviews_down_shows_reviews_unavailable(
    tmp_path: Path, http: httpx.Client, free_port: Callable[[], int], bookinfo: Bookinfo
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with running(
        "productpage-v1", tmp_path, DETAILS_URL=bookinfo["details"].url, REVIEWS_URL=dead
    ) as page:
        html = http.get(f"{page.url}/productpage").text
        assert "Error fetching product reviews!" in html
        assert REVIEWS_DOWN in html
        assert "Book Details" in html  # details still shown
        api = http.get(f"{page.url}/api/v1/products/0/reviews")
        assert api.status_code == 500
        assert api.json() == {"error": REVIEWS_DOWN}


def test_details_down_shows_details_error(
    tmp_path: Path, http: httpx.Client, free_port: Callable[[], int], bookinfo: Bookinfo
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with running(
        "productpage-v1", tmp_path, DETAILS_URL=dead, REVIEWS_URL=bookinfo["reviews-v2"].url
    ) as page:
        html = http.get(f"{page.url}/productpage").text
        assert "Error fetching product details!" in html
        assert "Sorry, product details are currently unavailable for this book." in html
        assert star_lines(html) == 10  # reviews still shown


def test_failing_reviews_are_tried_twice(tmp_path: Path, http: httpx.Client) -> None:
    with (
        recording(503, {"error": "upstream"}) as reviews,
        recording(200, {"id": 0, "type": "paperback"}) as details,
        running(
            "productpage-v1", tmp_path, DETAILS_URL=details.url, REVIEWS_URL=reviews.url
        ) as page,
    ):
        html = http.get(f"{page.url}/productpage").text
        assert REVIEWS_DOWN in html
        assert [r.path for r in reviews.requests] == ["/reviews/0", "/reviews/0"]
        assert [r.path for r in details.requests] == ["/details/0"]
        api = http.get(f"{page.url}/api/v1/products/0/reviews")
        assert api.status_code == 503  # the upstream's status, as Istio's page returns it


# --- users and trace headers ----------------------------------------------------------------


@dataclass
class Chain:
    """productpage -> details (recorder) and reviews-v2 (real) -> ratings (recorder)."""

    page: App
    reviews: App
    details: Recorder
    ratings: Recorder


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    details_body = {"id": 0, "type": "paperback", "publisher": "PublisherA"}
    ratings_body = {"id": 0, "ratings": {"Reviewer1": 3, "Reviewer2": 2}}
    with (
        recording(200, details_body) as details,
        recording(200, ratings_body) as ratings,
        running("reviews-v2", tmp_path, RATINGS_URL=ratings.url) as reviews,
        running(
            "productpage-v1", tmp_path, DETAILS_URL=details.url, REVIEWS_URL=reviews.url
        ) as page,
    ):
        yield Chain(page, reviews, details, ratings)


def test_login_sends_end_user_downstream(chain: Chain, http: httpx.Client) -> None:
    url = chain.page.url
    referer = f"{url}/productpage?u=test"
    login = http.post(f"{url}/login", data={"username": "jason"}, headers={"Referer": referer})
    assert login.status_code == 302
    assert login.headers["location"] == referer
    assert http.cookies.get("session")  # kept by the client like a browser or `curl -c`

    page = http.get(f"{url}/productpage").text
    assert "jason" in page and 'href="logout"' in page
    assert star_lines(page) == 10  # ratings 3 and 2: 5 full, 5 empty
    assert page.count(FULL_STAR) == 5
    assert chain.details.requests[-1].headers.get("end-user") == "jason"
    assert chain.ratings.requests[-1].headers.get("end-user") == "jason"  # via reviews
    assert "end-user=jason" in chain.reviews.log_text()

    logout = http.get(f"{url}/logout", headers={"Referer": referer})
    assert logout.status_code == 302
    assert logout.headers["location"] == referer
    assert "Max-Age=0" in logout.headers["set-cookie"]
    assert not http.cookies.get("session")

    page = http.get(f"{url}/productpage").text
    assert "sign out" not in page
    assert "end-user" not in chain.details.requests[-1].headers
    assert "end-user" not in chain.ratings.requests[-1].headers


def test_forged_session_is_not_a_user(chain: Chain, http: httpx.Client) -> None:
    forged = "amFzb24.00000000000000000000000000000000"  # "jason", wrong signature
    page = http.get(f"{chain.page.url}/productpage", headers={"Cookie": f"session={forged}"}).text
    assert "sign out" not in page
    assert "end-user" not in chain.details.requests[-1].headers


TRACE_HEADERS = {
    "x-request-id": "5d1b6f3c-0000-4000-8000-000000000001",
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "tracestate": "congo=t61rcWkgMzE",
    "x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7",
    "x-b3-spanid": "e457b5a2e4d86bd1",
    "x-b3-parentspanid": "05e3ac9a4f6e3b90",
    "x-b3-sampled": "1",
    "x-b3-flags": "1",
    "b3": "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
    "x-ot-span-context": "ot-context",
    "x-cloud-trace-context": "105445aa7843bc8bf206b12000100000/1;o=1",
    "grpc-trace-bin": "AAARf5c1DJ6vZ3rn4hT+sX0=",
    "sw8": "1-TRACEID-SEGMENTID-3-PARENT-SERVICE-INSTANCE-ENDPOINT-TARGET",
    "x-datadog-trace-id": "123",
    "user-agent": "bookinfo-test/1.0",
}


def test_trace_headers_propagate_through_every_hop(chain: Chain, http: httpx.Client) -> None:
    http.get(f"{chain.page.url}/productpage", headers=TRACE_HEADERS)
    to_details = chain.details.requests[-1].headers
    to_ratings = chain.ratings.requests[-1].headers  # productpage -> reviews -> ratings
    for name, value in TRACE_HEADERS.items():
        assert to_details.get(name) == value, name
        assert to_ratings.get(name) == value, name
    assert "x-not-a-trace-header" not in to_details
    assert f"x-request-id={TRACE_HEADERS['x-request-id']}" in chain.reviews.log_text()


def test_unlisted_headers_are_not_propagated(chain: Chain, http: httpx.Client) -> None:
    http.get(f"{chain.page.url}/productpage", headers={"x-not-a-trace-header": "1"})
    assert "x-not-a-trace-header" not in chain.details.requests[-1].headers
    assert "x-not-a-trace-header" not in chain.ratings.requests[-1].headers


def test_every_request_is_logged_once(bookinfo: Bookinfo, http: httpx.Client) -> None:
    details = bookinfo["details"]
    marker = "/details/314159"
    http.get(f"{details.url}{marker}")
    lines = [line for line in details.log_text().splitlines() if marker in line]
    assert len(lines) == 1
    assert '"GET /details/314159" 200' in lines[0]
