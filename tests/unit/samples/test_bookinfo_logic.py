"""The Bookinfo apps' pure parts, imported from their scripts: settings, sessions, retries,
timeouts, fault versions and star rendering, without processes or sockets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from tests.unit.samples.bookinfo_apps import load_app_module

productpage = load_app_module("productpage")
reviews = load_app_module("reviews")
ratings = load_app_module("ratings")
details = load_app_module("details")


class FakeFetch:
    """Answers from a list (the last one repeats) and records every call."""

    def __init__(self, *answers: tuple[int, Any]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, dict[str, str], float]] = []

    def __call__(self, url: str, headers: Mapping[str, str], timeout: float) -> tuple[int, Any]:
        self.calls.append((url, dict(headers), timeout))
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def get(module: Any, path: str, headers: dict[str, str] | None = None) -> Any:
    return module.Request("GET", path, headers or {})


# --- settings -------------------------------------------------------------------------------


def test_settings_default_to_kubernetes_service_names() -> None:
    s = productpage.Settings.from_env({})
    assert (s.port, s.bind) == (9080, "0.0.0.0")
    assert s.details_url == "http://details:9080"
    assert s.reviews_url == "http://reviews:9080"
    assert s.ratings_url == "http://ratings:9080"
    assert reviews.Settings.from_env({}).ratings_url == "http://ratings:9080"


def test_settings_follow_istio_hostname_variables_and_explicit_urls() -> None:
    env = {"SERVICES_DOMAIN": "bookinfo.svc.cluster.local", "DETAILS_HOSTNAME": "details-x"}
    s = productpage.Settings.from_env(env)
    assert s.details_url == "http://details-x.bookinfo.svc.cluster.local:9080"
    assert s.reviews_url == "http://reviews.bookinfo.svc.cluster.local:9080"
    s = productpage.Settings.from_env({"REVIEWS_URL": "http://127.0.0.1:1234/", "PORT": "81"})
    assert (s.reviews_url, s.port) == ("http://127.0.0.1:1234", 81)
    assert details.Settings.from_env({"PORT": "81"}, ["details.py", "9081"]).port == 9081


@pytest.mark.parametrize(
    ("env", "enabled", "color", "timeout"),
    [
        ({"SERVICE_VERSION": "v1"}, False, "black", 10.0),
        ({"SERVICE_VERSION": "v2"}, True, "black", 10.0),
        ({"SERVICE_VERSION": "v3"}, True, "red", 2.5),
        ({"SERVICE_VERSION": "v2", "STAR_COLOR": "red"}, True, "red", 2.5),
        ({"SERVICE_VERSION": "v1", "ENABLE_RATINGS": "true"}, True, "black", 10.0),
        ({"SERVICE_VERSION": "v3", "ENABLE_RATINGS": "false"}, False, "red", 2.5),
    ],
)
def test_reviews_versions(env: dict[str, str], enabled: bool, color: str, timeout: float) -> None:
    s = reviews.Settings.from_env(env)
    assert (s.ratings_enabled, s.star_color, s.ratings_timeout) == (enabled, color, timeout)


# --- reviews ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "timeout"), [("v2", 10.0), ("v3", 2.5)])
def test_reviews_call_ratings_with_the_version_timeout(version: str, timeout: float) -> None:
    s = reviews.Settings.from_env({"SERVICE_VERSION": version, "RATINGS_URL": "http://r:1"})
    fetch = FakeFetch((200, {"id": 0, "ratings": {"Reviewer1": 2, "Reviewer2": 1}}))
    answer = reviews.handle(s, fetch, get(reviews, "/reviews/0", {"end-user": "jason"}))
    assert answer.status == 200
    assert fetch.calls == [("http://r:1/ratings/0", {"end-user": "jason"}, timeout)]


@pytest.mark.parametrize(
    "ratings_answer",
    [(0, None), (500, {"error": "x"}), (200, {"unexpected": True}), (200, None)],
)
def test_reviews_without_usable_ratings_say_unavailable(ratings_answer: tuple[int, Any]) -> None:
    s = reviews.Settings.from_env({"SERVICE_VERSION": "v2"})
    body = reviews.reviews_body(s, 0, reviews.stars_from(*ratings_answer))
    assert [r["rating"] for r in body["reviews"]] == [
        {"error": "Ratings service is currently unavailable"}
    ] * 2


def test_reviews_forward_only_listed_headers() -> None:
    incoming = {"x-request-id": "a", "b3": "b", "end-user": "u", "host": "h", "cookie": "c"}
    assert reviews.forward_headers(incoming) == {"x-request-id": "a", "b3": "b", "end-user": "u"}


# --- productpage: sessions, headers, retries, timeouts ----------------------------------------


def test_session_cookie_round_trip_and_forgery() -> None:
    value = productpage.session_cookie_value("secret", "jason")
    assert productpage.session_user("secret", f"other=1; session={value}") == "jason"
    assert productpage.session_user("another-secret", f"session={value}") == ""
    payload = value.split(".")[0]
    assert productpage.session_user("secret", f"session={payload}.{'0' * 32}") == ""
    assert productpage.session_user("secret", "session=garbage") == ""
    assert productpage.session_user("secret", None) == ""
    unicode_user = productpage.session_cookie_value("s", "jösé")
    assert productpage.session_user("s", f"session={unicode_user}") == "jösé"


def test_productpage_headers_session_user_wins_over_incoming_end_user() -> None:
    incoming = {"end-user": "mallory", "traceparent": "t", "cookie": "c", "accept": "x"}
    assert productpage.forward_headers(incoming, "jason") == {
        "end-user": "jason",
        "traceparent": "t",
        "cookie": "c",
    }
    assert productpage.forward_headers({"x-b3-traceid": "1"}, "") == {"x-b3-traceid": "1"}


def test_productpage_calls_use_a_3s_timeout_and_retry_reviews_once() -> None:
    s = productpage.Settings(details_url="http://d", reviews_url="http://r")
    fetch = FakeFetch((0, None))
    page = productpage.handle(s, fetch, get(productpage, "/productpage"))
    assert page.status == 200
    assert [(url, timeout) for url, _, timeout in fetch.calls] == [
        ("http://d/details/0", 3.0),
        ("http://r/reviews/0", 3.0),
        ("http://r/reviews/0", 3.0),
    ]
    text = page.body.decode()
    assert "Error fetching product details!" in text
    assert "Sorry, product reviews are currently unavailable for this book." in text


def test_reviews_succeeding_on_the_second_try_are_shown() -> None:
    fetch = FakeFetch(
        (503, None),
        (
            200,
            {"reviews": [{"reviewer": "R", "text": "T", "rating": {"stars": 3, "color": "red"}}]},
        ),
    )
    status, body = productpage.get_reviews(productpage.Settings(), fetch, "0", {})
    assert status == 200 and body["reviews"][0]["reviewer"] == "R"
    assert len(fetch.calls) == 2


def test_login_without_referer_redirects_to_the_product_page() -> None:
    request = productpage.Request("POST", "/login", {}, b"username=jason&passwd=x")
    answer = productpage.handle(productpage.Settings(), FakeFetch((0, None)), request)
    assert answer.status == 302
    headers = dict(answer.headers)
    assert headers["Location"] == "productpage"
    assert headers["Set-Cookie"].startswith("session=")


# --- rendering ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("stars", "full", "empty"), [(0, 0, 5), (4, 4, 1), (5, 5, 0), (9, 5, 0)])
def test_render_stars_one_star_per_line(stars: int, full: int, empty: int) -> None:
    lines = productpage.render_stars({"stars": stars, "color": "red"})
    assert lines[0] == '<font color="red" style="color: red">'
    assert lines.count('  <span class="glyphicon glyphicon-star"></span>') == full
    assert lines.count('  <span class="glyphicon glyphicon-star-empty"></span>') == empty
    assert sum("glyphicon-star" in line for line in lines) == 5


def test_page_escapes_values_from_other_services() -> None:
    reviews_body = {"reviews": [{"reviewer": "<b>x</b>", "text": "<script>alert(1)</script>"}]}
    page = productpage.render_product_page(
        productpage.PRODUCTS[0], 200, {"type": "<i>"}, 200, reviews_body, "<jason>"
    )
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "&lt;jason&gt;" in page and "<i>" not in page.split("Book Details")[1]


# --- ratings fault versions ---------------------------------------------------------------------


def test_ratings_fault_versions() -> None:
    store = ratings.RatingsStore()
    slept: list[float] = []
    request = get(ratings, "/ratings/1")

    def answer(version: str, coin: bool) -> int:
        s = ratings.Settings(version=version)
        response = ratings.handle(s, store, request, coin=lambda: coin, sleep=slept.append)
        return int(response.status)

    assert answer("v-unavailable", False) == 503
    assert answer("v-faulty", True) == 503
    assert answer("v-faulty", False) == 200
    assert answer("v-delayed", False) == 200 and slept == []
    assert answer("v-delayed", True) == 200 and slept == [7.0]
    assert answer("v1", True) == 200
