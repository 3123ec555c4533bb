"""The one client for OpenAI-compatible HTTP servers (hosted models, vLLM, llama.cpp's server, TGI).

The HTTP judge and the server generation backend both talk through it:

- Concurrency: at most ``max_concurrency`` requests in flight (an asyncio
  semaphore held only for the HTTP call, not during backoff sleeps).
- Transport failures (429, 408, 409, 425, 5xx, timeouts, dropped connections)
  are retried with exponential backoff and jitter, waiting at least what
  ``Retry-After`` asks for (seconds or an HTTP date, capped). So is a 200 reply
  that the caller's ``validate`` rejects (a malformed body). After
  ``max_retries`` the request raises ``Unavailable``: retryable, a later run
  tries again.
- 401/403/404 mean the server is misconfigured (wrong key, wrong path, unknown
  model): ``ServerMisconfigured`` at once. Any other 4xx is about this one
  request: ``RequestRejected`` at once (repeating it would not help).
- ``list_models`` asks ``GET /models`` (what the experiment check at Start uses).
"""
from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from typing import Any

__all__ = [
    "ClientSettings",
    "OpenAIClient",
    "ServerError",
    "ServerMisconfigured",
    "RequestRejected",
    "Unavailable",
    "MalformedReply",
    "retry_after_seconds",
    "run_coroutine",
]

RETRY_STATUS = frozenset({408, 409, 425, 429})
FATAL_STATUS = frozenset({401, 403, 404})


class ServerError(RuntimeError):
    """Base of the client's errors."""


class ServerMisconfigured(ServerError):
    """401/403/404, or no server at all where one was required: the run should stop."""


class RequestRejected(ServerError):
    """A 4xx about this request (bad parameters): repeating it would not help."""


class Unavailable(ServerError):
    """Retries exhausted for one request (overloaded, down, timing out, replying garbage): try in a later run."""


class MalformedReply(ValueError):
    """Raised by a ``validate`` callback: the 200 body is not the reply asked for."""


@dataclass(kw_only=True)
class ClientSettings:
    """How to reach an OpenAI-compatible server and retry it. The configs of the backends that talk
    to one (the HTTP judge, server generation) extend this class, so the settings have one
    name, type and default each (a backend may change a default); ``of`` takes them back out."""

    base_url: str  # up to and including the API version, e.g. "http://127.0.0.1:8000/v1"
    api_key_env: str | None = "OPENAI_API_KEY"  # environment variable holding the key; unset = no auth
    timeout_s: float = 60.0
    max_concurrency: int = 8
    max_retries: int = 6
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 300.0

    def __post_init__(self):
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if self.max_retries < 0:
            raise ValueError("retry counts cannot be negative")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")

    @classmethod
    def of(cls, config: ClientSettings) -> ClientSettings:
        """The transport settings alone of a backend's config (the judge's, a server's)."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header as seconds to wait (a number or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class Reply:
    text: str  # the raw 200 body
    data: Any = None  # what ``validate`` returned (the parsed reply), if given
    attempts: int = 1


@dataclass
class _Session:
    client: Any
    semaphore: asyncio.Semaphore


class OpenAIClient:
    """Posts to one server with bounded concurrency and retries. ``stats`` counts requests and retries;
    pass a dict to share the counts with the caller's own (the judge's cache hits, say)."""

    def __init__(self, settings: ClientSettings, stats: dict | None = None):
        self.settings = settings
        self.stats = stats if stats is not None else {}
        for key in ("http_requests", "transport_retries", "malformed_replies"):
            self.stats.setdefault(key, 0)
        self._session: _Session | None = None

    def url(self, path: str) -> str:
        return self.settings.base_url.rstrip("/") + "/" + path.lstrip("/")

    def headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.settings.api_key_env) if self.settings.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def backoff(self, attempt: int) -> float:
        base = min(self.settings.backoff_max_s, self.settings.backoff_initial_s * (2**attempt))
        return base * (0.5 + random.random() / 2)

    # -- sessions -------------------------------------------------------------

    @asynccontextmanager
    async def session(self):
        """One connection pool and semaphore for everything posted inside; ``post`` needs one open."""
        _fast_missing_sniffio()
        import httpx

        c = self.settings.max_concurrency
        limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
        # Plain-HTTP endpoints (local vLLM / llama.cpp) need no CA bundle; loading it costs ~50 ms per client.
        verify = not self.settings.base_url.startswith("http://")
        async with httpx.AsyncClient(timeout=httpx.Timeout(self.settings.timeout_s), limits=limits, verify=verify) as client:
            previous = self._session
            self._session = _Session(client, asyncio.Semaphore(c))
            try:
                yield self
            finally:
                self._session = previous

    async def post(self, path: str, payload: dict, *, validate: Callable[[str], Any] | None = None) -> Reply:
        """POST ``payload`` as JSON; the 200 body (and ``validate(body)``), retried as the module says."""
        import httpx

        if self._session is None:
            raise RuntimeError("OpenAIClient.post needs an open session (async with client.session())")
        session = self._session
        url = self.url(path)
        last = "no attempt"
        for attempt in range(self.settings.max_retries + 1):
            delay = None
            try:
                async with session.semaphore:
                    self.stats["http_requests"] += 1
                    response = await session.client.post(url, json=payload, headers=self.headers())
            except httpx.TimeoutException as exc:
                last = f"timeout ({type(exc).__name__})"
            except httpx.TransportError as exc:
                last = f"transport error ({type(exc).__name__}: {exc})"
            else:
                status = response.status_code
                if status == 200:
                    if validate is None:
                        return Reply(response.text, attempts=attempt + 1)
                    try:
                        return Reply(response.text, validate(response.text), attempts=attempt + 1)
                    except MalformedReply as exc:
                        self.stats["malformed_replies"] += 1
                        last = f"malformed reply ({exc})"
                elif status in FATAL_STATUS:
                    raise ServerMisconfigured(f"{url} answered HTTP {status}: {response.text[:300]}")
                elif status not in RETRY_STATUS and status < 500:
                    raise RequestRejected(f"HTTP {status}: {response.text[:300]}")
                else:
                    last = f"HTTP {status}"
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                    if retry_after is not None:
                        delay = min(retry_after, self.settings.max_retry_after_s)
            if attempt == self.settings.max_retries:
                break
            self.stats["transport_retries"] += 1
            backoff = self.backoff(attempt)
            await asyncio.sleep(max(backoff, delay) if delay is not None else backoff)
        raise Unavailable(f"gave up after {self.settings.max_retries + 1} attempts: {last}")

    # -- one-off calls ----------------------------------------------------------

    def list_models(self, *, timeout_s: float | None = None) -> list[str]:
        """The model ids ``GET /models`` lists (no retries: for a check at Start). Raises ServerError."""
        _fast_missing_sniffio()
        import httpx

        url = self.url("models")
        timeout = timeout_s if timeout_s is not None else min(self.settings.timeout_s, 10.0)
        try:
            response = httpx.get(url, headers=self.headers(), timeout=timeout,
                                 verify=not self.settings.base_url.startswith("http://"))
        except httpx.InvalidURL as exc:
            raise ServerMisconfigured(f"{url!r} is not a usable address ({exc})") from None
        except httpx.HTTPError as exc:
            raise Unavailable(f"{url} cannot be reached ({type(exc).__name__}: {exc})") from None
        if response.status_code != 200:
            raise ServerMisconfigured(f"{url} answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            data = json.loads(response.text)
            return [str(item["id"]) for item in data["data"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ServerMisconfigured(f"{url} did not answer with an OpenAI model list ({type(exc).__name__})") from None


def _fast_missing_sniffio() -> None:
    """httpcore runs ``import sniffio`` for every lock and event it creates; anyio >= 4 no longer installs
    sniffio, and a failed import searches the whole path each time (milliseconds per request, most of the
    client's CPU in the benchmark). Recording the module as absent makes the same ImportError immediate;
    nothing changes where sniffio is installed."""
    import importlib.util
    import sys

    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None


def run_coroutine(coroutine):
    """asyncio.run, or in a helper thread when the caller already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    box: dict = {}

    def target():
        try:
            box["value"] = asyncio.run(coroutine)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
