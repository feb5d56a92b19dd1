"""robots.txt caching and policy, and X-Robots-Tag parsing, with an in-memory fetcher (no network)."""

from __future__ import annotations

import asyncio

import pytest

from emocurate.crawl.robots import RobotsCache, optout_directive

UA = "emocurate/0.1 (+https://example.org/emocurate)"


def run_checks(answer, urls):
    calls = []

    async def fetch(url):
        calls.append(url)
        await asyncio.sleep(0.01)
        return answer

    async def main():
        cache = RobotsCache(fetch, UA)
        return await asyncio.gather(*(cache.check(u) for u in urls))

    return asyncio.run(main()), calls


def test_robots_fetched_once_per_host_and_rules_applied():
    rules = "User-agent: emocurate\nDisallow: /private/\n\nUser-agent: *\nDisallow: /\n"
    urls = ["http://h:1/a.jpg", "http://h:1/private/b.jpg", "http://h:1/c.jpg", "http://other:1/x"]
    results, calls = run_checks((200, rules), urls)
    assert calls == ["http://h:1/robots.txt", "http://other:1/robots.txt"]  # concurrent checks share one fetch
    assert [why is None for why, _ in results] == [True, False, True, True]
    assert "disallows this path for 'emocurate'" in results[1][0] and results[1][1] is False


@pytest.mark.parametrize(
    "answer, allowed, temporary",
    [((404, ""), True, False), ((410, ""), True, False), ((503, ""), False, True), ((None, "TimeoutError"), False, True)],
)
def test_robots_unavailable_policy(answer, allowed, temporary):
    [(why, temp)], _ = run_checks(answer, ["http://h/a.jpg"])
    assert (why is None) == allowed and temp == temporary


@pytest.mark.parametrize(
    "values, expected",
    [
        (["noai"], "noai"),
        (["noindex, nofollow"], "noindex"),
        (["NoImageAI"], "noimageai"),
        (["otherbot: noindex"], None),
        (["otherbot: noindex, noai"], None),
        (["emocurate: noimageai"], "noimageai"),
        (["otherbot: noindex", "noai"], "noai"),
        (["nofollow", "noarchive"], None),
        ([], None),
    ],
)
def test_x_robots_tag(values, expected):
    assert optout_directive(values, UA) == expected


@pytest.mark.parametrize(
    "rules, delay",
    [
        ("Crawl-delay: 2", 2.0), ("Crawl-delay: 0.4", 1.0), ("Crawl-delay: 3600", 3600.0), ("Request-rate: 4/1", 0.25),
        ("Request-rate: 1/10s", 10.0), ("Request-rate: 1/5m", 300.0), ("request-rate: 3/1H 0800-1700", 1200.0),
        ("Request-rate: 1/0.5", 1.0), ("Crawl-delay: 1\nRequest-rate: 1/20s", 20.0), ("Disallow: /x", 0.0),
    ],  # fmt: skip
)
def test_crawl_delay(rules, delay):
    async def main():
        cache = RobotsCache(lambda url: _answer((200, f"User-agent: *\n{rules}\n")), UA)
        assert cache.crawl_delay("http://h/a.jpg") == 0.0  # unknown until robots.txt is read
        await cache.check("http://h/a.jpg")
        return cache.crawl_delay("http://h/b.jpg")

    assert asyncio.run(main()) == delay


async def _answer(value):
    return value


def test_a_refused_host_raises_blocked_address_for_every_waiting_check():
    from emocurate.crawl.netguard import BlockedAddress

    async def fetch(url):
        await asyncio.sleep(0.01)
        raise BlockedAddress("h resolves to loopback address 127.0.0.1")

    async def main():
        cache = RobotsCache(fetch, UA)
        return await asyncio.gather(*(cache.check(f"http://h/{i}.jpg") for i in range(3)), return_exceptions=True)

    results = asyncio.run(main())
    assert [type(r) for r in results] == [BlockedAddress] * 3 and "loopback" in str(results[2])
