"""Refusals a hostile network provokes: addresses spelled to slip past the guard, broken redirects, a robots.txt that
asks for hours between requests; each ends with the status that names it and the right retry behaviour. Loopback only."""

from __future__ import annotations

import time

import pytest

from emocurate.crawl.state import CrawlState
from emocurate.sources.urls import iter_urls
from tests.emocurate.crawl.test_fetch import image_bytes, test_config
from tests.helpers.crawl_server import Body, CrawlServer, redirect


def crawl(tmp_path, urls, **cfg):
    path = tmp_path / "urls.txt"
    path.write_text("\n".join(urls) + "\n")
    return {it.source_id: it for it in iter_urls(str(path), tmp_path / "state", test_config(**cfg))}


@pytest.mark.parametrize("host", ["2130706434", "127.2", "0x7f000002", "0177.0.0.2", "127.0.0.2.", "127.0.0.2"])
def test_redirect_to_a_refused_address_in_any_spelling_is_blocked_address(tmp_path, host):
    with CrawlServer() as srv:  # only 127.0.0.1 is exempt; every spelling here means 127.0.0.2
        srv.routes["/r.jpg"] = redirect(f"http://{host}:{srv.port}/a.jpg")
        srv.routes["/a.jpg"] = Body(image_bytes(1))
        [item] = crawl(tmp_path, [srv.url("/r.jpg")]).values()
        assert item.metadata["fetch_status"] == "blocked_address", item.error
        assert "loopback address" in item.error and "127.0.0.2" in item.error and "allow_hosts" in item.error
        assert srv.requests["/r.jpg"] == 1 and srv.requests["/a.jpg"] == 0  # refused before any traffic, not retried


def test_localhost_and_127_0_0_1_get_the_same_status(tmp_path):
    with CrawlServer({"/a.jpg": Body(image_bytes(1))}) as srv:
        urls = [f"http://localhost:{srv.port}/a.jpg", srv.url("/a.jpg")]
        items = crawl(tmp_path, urls, allow_hosts=[])
        assert [it.metadata["fetch_status"] for it in items.values()] == ["blocked_address", "blocked_address"]
        assert "localhost resolves to loopback address" in items[urls[0]].error
        assert sum(srv.requests.values()) == 0  # not even robots.txt


@pytest.mark.parametrize("location", ["http://[invalid", "http://[::1/x.jpg", "http://h:99999/x.jpg"])
def test_a_redirect_to_a_malformed_url_is_bad_url_and_not_retried(tmp_path, location):
    with CrawlServer({"/r.jpg": redirect(location)}) as srv:
        [item] = crawl(tmp_path, [srv.url("/r.jpg")]).values()
        assert item.metadata["fetch_status"] == "bad_url" and location in item.error
        assert srv.requests["/r.jpg"] == 1


def test_a_malformed_url_in_the_list_is_bad_url(tmp_path):
    [item] = crawl(tmp_path, ["http://[invalid/a.jpg"]).values()
    assert item.metadata["fetch_status"] == "bad_url" and item.error.startswith("bad_url: ")


def test_exempting_a_blocked_host_and_retry_failed_refetches_it(tmp_path):
    with CrawlServer({"/a.jpg": Body(image_bytes(1)), "/b.jpg": Body(image_bytes(2))}) as srv:
        urls = [srv.url("/a.jpg"), srv.url("/b.jpg")]
        first = crawl(tmp_path, urls, allow_hosts=[])
        assert {it.metadata["fetch_status"] for it in first.values()} == {"blocked_address"}
        assert "a rerun with retry_failed fetches it" in first[urls[0]].error

        again = crawl(tmp_path, urls, allow_hosts=["127.0.0.1"])  # the hint followed halfway: no retry_failed
        assert {it.metadata["fetch_status"] for it in again.values()} == {"blocked_address"}
        assert sum(srv.requests.values()) == 0

        fixed = crawl(tmp_path, urls, allow_hosts=["127.0.0.1"], retry_failed=True)
        assert [it.metadata["fetch_status"] for it in fixed.values()] == ["ok", "ok"]
        assert [it.data for it in fixed.values()] == [image_bytes(1), image_bytes(2)]
        assert srv.requests["/a.jpg"] == srv.requests["/b.jpg"] == 1


@pytest.mark.parametrize("rule", ["Crawl-delay: 3600", "Request-rate: 1/1h", "Request-rate: 2/120m 0800-1700"])
def test_a_crawl_delay_over_the_cap_ends_at_once_and_is_retryable(tmp_path, rule):
    routes = {"/robots.txt": Body(f"User-agent: *\n{rule}\n".encode(), "text/plain")}
    routes.update({f"/g{i}.jpg": Body(image_bytes(300 + i)) for i in range(3)})
    with CrawlServer(routes) as srv:
        urls = [srv.url(f"/g{i}.jpg") for i in range(3)]
        start = time.monotonic()
        items = crawl(tmp_path, urls, max_crawl_delay=60)
        assert time.monotonic() - start < 10  # not one hour per URL
        assert {it.metadata["fetch_status"] for it in items.values()} == {"crawl_delay_too_long"}
        error = items[urls[0]].error
        assert "asks for 3600 s between requests" in error and "crawl.max_crawl_delay (60 s)" in error
        assert sum(n for p, n in srv.requests.items() if p != "/robots.txt") == 0
        state = CrawlState(tmp_path / "state")
        assert all(state.needs_fetch(u, retry_failed=True) and not state.needs_fetch(u, retry_failed=False) for u in urls)

        [item] = crawl(tmp_path, urls[:1], max_crawl_delay=4000, retry_failed=True).values()  # cap raised: the
        assert item.metadata["fetch_status"] == "ok"  # first request to a host never waits


def test_a_crawl_delay_within_the_cap_is_honoured(tmp_path):
    routes = {"/robots.txt": Body(b"User-agent: *\nCrawl-delay: 1\n", "text/plain")}
    routes.update({f"/g{i}.jpg": Body(image_bytes(400 + i)) for i in range(2)})
    with CrawlServer(routes) as srv:
        items = crawl(tmp_path, [srv.url("/g0.jpg"), srv.url("/g1.jpg")], max_crawl_delay=1)
        assert {it.metadata["fetch_status"] for it in items.values()} == {"ok"}
        times = sorted(t for t, p in srv.log if p != "/robots.txt")
        assert times[1] - times[0] >= 0.95
