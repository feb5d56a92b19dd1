"""Consent checks for the crawler: robots.txt (fetched once per host per run and cached; rules, Crawl-delay,
Request-rate) and `X-Robots-Tag` opt-out headers (noai, noimageai, noindex, noimageindex, none).

Policy when robots.txt cannot be read: 4xx (none published) => everything allowed; 5xx, timeout or connection
failure => everything disallowed for this run (as Google does), recorded as retryable so `retry_failed` tries again;
a host the address guard refuses raises BlockedAddress for every URL of it. It does not fetch images; `fetch.py` asks it
before each request and caps the delay it reports.
"""

from __future__ import annotations

import asyncio
import math
import re
from typing import Awaitable, Callable
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

from emocurate.crawl.netguard import BlockedAddress

FRACTIONAL_DELAY = re.compile(r"(?im)^(\s*crawl-delay\s*:\s*)(\d*\.\d+)")  # urllib reads integers only: round up
REQUEST_RATE = re.compile(r"(?im)^(\s*request-rate\s*:\s*)(\d+)\s*/\s*(\d*\.?\d+)\s*([smh]?)\b[^\n#]*")
"""`Request-rate: 1/10s 0800-1700`: requests / period with an optional unit (s, m, h) and time window. urllib reads only
bare integers `1/10`; the window is dropped (the rate then holds all day: the polite reading)."""
RATE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}
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
            except BlockedAddress as err:  # the host itself is refused: its URLs are blocked, not robots-disallowed
                future.set_result(err)
            except BaseException as err:  # waiters must never hang on a cancelled or failed load
                future.set_result(f"robots.txt check failed: {type(err).__name__}")
                raise
        parser = await future
        if isinstance(parser, BlockedAddress):
            raise BlockedAddress(str(parser))
        if isinstance(parser, str):
            return parser, True
        if not parser.can_fetch(self.agent, url):
            return f"robots.txt of {origin} disallows this path for {self.agent!r}", False
        return None, False

    def crawl_delay(self, url: str) -> float:
        """Seconds to leave between requests to this origin (robots.txt Crawl-delay or Request-rate), 0 if none."""
        parts = urlsplit(url)
        future = self._parsers.get(f"{parts.scheme}://{parts.netloc}")
        if future is None or not future.done() or not isinstance(future.result(), RobotFileParser):
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
            parser.parse(normalize(text).splitlines())
        elif status is not None and 400 <= status < 500:
            parser.allow_all = True
        else:
            what = f"HTTP {status}" if status is not None else text
            return f"robots.txt unavailable ({what}); treated as disallow-all"
        return parser


def normalize(text: str) -> str:
    """Rewrite Crawl-delay and Request-rate values into the integer forms urllib's parser reads, never shortening a
    delay: fractional Crawl-delay rounds up, `Request-rate: 1/5m` becomes `1/300`, `1/0.5` becomes `1/1`."""
    text = FRACTIONAL_DELAY.sub(lambda m: f"{m[1]}{math.ceil(float(m[2]))}", text)
    return REQUEST_RATE.sub(lambda m: f"{m[1]}{m[2]}/{math.ceil(float(m[3]) * RATE_UNITS[m[4].lower()])}", text)


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
