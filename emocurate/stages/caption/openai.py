"""The `openai` caption backend: concurrent requests to an OpenAI-compatible /chat/completions endpoint.

Works with vLLM, SGLang, Ollama and OpenAI. Retries 429/5xx/connection errors/timeouts with exponential backoff and
jitter (honouring Retry-After); other 4xx are recorded at once. The API key is read from the environment per call
and never stored, logged or put into an error message.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import email.utils
import io
import json
import logging
import os
import random
import re
import time

from emocurate.stages.caption.contract import CaptionConfig, CaptionResult, check_one_emotion_per_image, downscale, finish, prompt_text

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
MAX_BACKOFF_S = 60.0


class OpenAICaptioner:
    backend = "openai"

    def __init__(self, cfg: CaptionConfig):
        self.cfg = cfg
        self.model_id, self.revision = cfg.model, cfg.revision
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self.requests_sent = 0  # every HTTP attempt, retries included (for logs and tests)

    def __repr__(self) -> str:
        url = re.sub(r"//[^/@]*@", "//", self.url)  # never show credentials written into base_url
        return f"OpenAICaptioner(model={self.model_id!r}, url={url!r}, api_key_env={self.cfg.api_key_env!r})"

    def prompt_text(self, emotion: str | None) -> str:
        return prompt_text(self.cfg.prompt, emotion)

    def caption(self, images: list, emotions: list[str | None]) -> list[CaptionResult]:
        check_one_emotion_per_image(images, emotions)
        work = lambda: asyncio.run(self._caption_all(images, emotions))  # noqa: E731
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return work()
        # called from inside an event loop (a notebook): run ours in a thread of its own
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(work).result()

    async def _caption_all(self, images: list, emotions: list[str | None]) -> list[CaptionResult]:
        import aiohttp

        key = os.environ.get(self.cfg.api_key_env) or None
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        limit = asyncio.Semaphore(self.cfg.concurrency)
        connector = aiohttp.TCPConnector(limit=self.cfg.concurrency)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            tasks = [self._one(session, limit, image, emotion, key) for image, emotion in zip(images, emotions)]
            return list(await asyncio.gather(*tasks))

    async def _one(self, session, limit: asyncio.Semaphore, image, emotion: str | None, key: str | None) -> CaptionResult:
        async with limit:
            try:
                if image is None:
                    raise ValueError("no image")
                body = await asyncio.to_thread(self._body, image, emotion)  # JPEG encoding overlaps other requests' waits
            except Exception as err:  # noqa: BLE001  recorded for this image only
                return CaptionResult(None, f"{type(err).__name__}: {err}", None)
            try:
                raw = await self._post(session, body, key)
            except RequestFailed as err:
                return CaptionResult(None, _redact(str(err), key), None)
            except Exception as err:  # noqa: BLE001  e.g. an undecodable body: this image's error, not the batch's
                return CaptionResult(None, _redact(f"{type(err).__name__}: {err}", key), None)
        # an endpoint that echoes the key into its answer must not get it stored (caption shards, records, dataset)
        return finish(_redact(raw, key, "[REDACTED]"), self.cfg.one_sentence)

    def _body(self, image, emotion: str | None) -> dict:
        buffer = io.BytesIO()
        downscale(image, self.cfg.max_image_side).save(buffer, format="JPEG", quality=90)
        url = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
        return {
            "model": self.cfg.model,
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}},
                {"type": "text", "text": self.prompt_text(emotion)},
            ]}],
            "max_tokens": self.cfg.max_new_tokens,
            "temperature": self.cfg.temperature,
            "seed": self.cfg.seed,
        }

    async def _post(self, session, body: dict, key: str | None) -> str:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.cfg.timeout_s)
        attempts = self.cfg.max_retries + 1
        for attempt in range(attempts):
            retry_after = None
            self.requests_sent += 1
            try:
                async with session.post(self.url, json=body, timeout=timeout) as response:
                    text = await response.text()
                    if response.status == 200:
                        return _content(text)
                    problem = f"HTTP {response.status}: {_error_message(text)}"
                    if response.status not in RETRY_STATUS:
                        raise RequestFailed(problem)
                    retry_after = _retry_after(response.headers.get("Retry-After"))
            except asyncio.TimeoutError:
                problem = f"timeout after {self.cfg.timeout_s:g} s"
            except aiohttp.ClientError as err:
                problem = f"connection error: {type(err).__name__}: {err}"
            if attempt + 1 < attempts:
                delay = retry_after if retry_after is not None else self._backoff(attempt)
                log.info("caption request failed (%s); retry %d/%d in %.2f s", _redact(problem, key), attempt + 1,
                         attempts - 1, delay)
                await asyncio.sleep(delay)
        raise RequestFailed(f"{problem} (gave up after {attempts} attempts)")

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter in [0.5, 1] of the step, so many clients do not retry in lockstep."""
        return min(MAX_BACKOFF_S, self.cfg.retry_base_s * 2 ** attempt) * random.uniform(0.5, 1.0)


class RequestFailed(Exception):
    """A request that will not succeed (non-retryable status, bad reply, or retries exhausted)."""


def _content(text: str) -> str:
    """The assistant message of a chat-completions reply; a malformed reply is a RequestFailed."""
    try:
        message = json.loads(text)["choices"][0]["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise RequestFailed(f"unexpected reply: {text[:200]!r}") from None
    content = message.get("content")
    if isinstance(content, list):  # some servers return content parts
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    if not isinstance(content, str):
        raise RequestFailed(f"reply has no text content: {text[:200]!r}")
    return content


def _error_message(text: str) -> str:
    try:
        error = json.loads(text).get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if message:
            return str(message)[:300]
    except (ValueError, AttributeError):
        pass
    return text[:300].strip() or "(empty body)"


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), capped at MAX_BACKOFF_S."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(MAX_BACKOFF_S, max(0.0, seconds))


def _redact(text: str, key: str | None, mark: str = "***") -> str:
    """Belt and braces: a server may echo the Authorization header in an error body or an answer."""
    return text.replace(key, mark) if key else text
