"""Consent checks for the crawler: robots.txt (fetched once per host per run and cached; rules, Crawl-delay,
Request-rate) and `X-Robots-Tag` opt-out headers (noai, noimageai, noindex, noimageindex, none).

Policy when robots.txt cannot be read: 4xx (none published) => everything allowed; 5xx, timeout or connection
failure => everything disallowed for this run (as Google does), recorded as retryable so `retry_failed` tries again.
It does not fetch images; `crawl.py` asks it before each request.
"""

from __future__ import annotations

import asyncio
import math
import re
from typing import Awaitable, Callable
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

FRACTIONAL_DELAY = re.compile(r"(?im)^(\s*crawl-delay\s*:\s*)(\d*\.\d+)")  # urllib reads integers only: round up
OPTOUT_DIRECTIVES = ("noai", "noimageai", "noindex", "noimageindex", "none")

RobotsFetcher = Callable[[str], Awaitable[tuple[int | None, str]]]
"""Fetches a robots.txt URL: (HTTP status or None when unreachable, body text or error message)."""


class RobotsCache:
    """One robots.txt decision table per scheme://host:port, fetched at most once even under concurrent requests."""

    def __init__(self, fetch: RobotsFetcher, user_agent: str):
        self.fetch = fetch
        self.agent = user_agent.split("/")[0].strip().lower()
        self._parsers: dict[str, asyncio.Future[RobotFileParser | str]] = {}

    async def check(self, url: str) -> tuple[str | None, bool]:
        """(None, False) when `url` may be fetched, else (why not, whether the refusal is temporary)."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        future = self._parsers.get(origin)
        if future is None:
            future = self._parsers[origin] = asyncio.get_running_loop().create_future()
            try:
                future.set_result(await self._load(origin + "/robots.txt"))
            except BaseException as err:  # waiters must never hang on a cancelled or failed load
                future.set_result(f"robots.txt check failed: {type(err).__name__}")
                raise
        parser = await future
        if isinstance(parser, str):
            return parser, True
        if not parser.can_fetch(self.agent, url):
            return f"robots.txt of {origin} disallows this path for {self.agent!r}", False
        return None, False

    def crawl_delay(self, url: str) -> float:
        """Seconds to leave between requests to this origin (robots.txt Crawl-delay or Request-rate), 0 if none."""
        parts = urlsplit(url)
        future = self._parsers.get(f"{parts.scheme}://{parts.netloc}")
        if future is None or not future.done() or isinstance(future.result(), str):
            return 0.0
        parser = future.result()
        delay = parser.crawl_delay(self.agent)
        rate = parser.request_rate(self.agent)
        rate_delay = rate.seconds / rate.requests if rate and rate.requests else 0.0
        return float(max(delay or 0.0, rate_delay))

    async def _load(self, robots_url: str) -> RobotFileParser | str:
        status, text = await self.fetch(robots_url)
        parser = RobotFileParser(robots_url)
        if status is not None and 200 <= status < 300:
            parser.parse(FRACTIONAL_DELAY.sub(lambda m: f"{m[1]}{math.ceil(float(m[2]))}", text).splitlines())
        elif status is not None and 400 <= status < 500:
            parser.allow_all = True
        else:
            what = f"HTTP {status}" if status is not None else text
            return f"robots.txt unavailable ({what}); treated as disallow-all"
        return parser


def optout_directive(values: list[str], user_agent: str) -> str | None:
    """The `X-Robots-Tag` directive that opts this content out of AI use, or None.

    Values look like 'noai', 'noindex, nofollow' or 'otherbot: noindex'; a directive addressed to another bot is ignored.
    """
    agent = user_agent.split("/")[0].strip().lower()
    for value in values:
        target = None
        for part in value.split(","):
            part = part.strip().lower()
            if ":" in part:
                maybe_agent, _, part = part.partition(":")
                target = maybe_agent.strip()
                part = part.strip()
            if target not in (None, "*", agent):
                continue
            if part in OPTOUT_DIRECTIVES:
                return part
    return None
