"""A judge that asks any OpenAI-compatible chat endpoint (hosted model, vLLM, llama.cpp server).

Transport is the shared ``openai_client.OpenAIClient`` (the server generation
backend uses the same one):

- Concurrency: at most ``max_concurrency`` requests in flight (an asyncio
  semaphore held only for the HTTP call, not during backoff sleeps).
- Transport failures (429, 408, 5xx, timeouts, dropped connections) are retried
  with exponential backoff and jitter, waiting at least what ``Retry-After``
  asks for (seconds or an HTTP date, capped). After ``max_retries`` the request
  gives up with a *retryable* error: the labeling run skips it this time and a
  later run tries again. 401/403/404 mean the backend is misconfigured and raise
  ``JudgeError`` at once.
- Replies are validated strictly (``prompts.parse_ranking_reply``). An invalid
  reply is answered with a correction turn ("your reply was not valid because
  ...") up to ``invalid_reply_retries`` times; then the request is reported as
  invalid, never guessed.
- Cache: every 200 reply is stored in SQLite under the sha256 of the canonical
  JSON request (model, messages, settings), correction turns included, so a
  rerun replays the same conversation - valid and invalid replies alike - and
  sends nothing.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..io import sha256_json
from ..openai_client import (
    ClientSettings,
    OpenAIClient,
    RequestRejected,
    ServerMisconfigured,
    Unavailable,
    retry_after_seconds,
    run_coroutine,
)
from .base import Judge, JudgeError, JudgeRequest, JudgeResult
from .prompts import InvalidReply, parse_ranking_reply, ranking_messages

__all__ = ["HTTPJudgeConfig", "HTTPJudge", "ReplyCache"]

_retry_after_seconds = retry_after_seconds  # older callers


@dataclass(kw_only=True)
class HTTPJudgeConfig(ClientSettings):
    """An OpenAI-compatible chat model as the judge; how it is reached and retried is ClientSettings'."""

    model: str
    temperature: float = 0.0
    top_p: float | None = None
    max_tokens: int = 512
    seed: int | None = None
    json_mode: bool = True  # send response_format={"type": "json_object"}
    extra_body: dict = field(default_factory=dict)  # more request fields, part of the cache key
    invalid_reply_retries: int = 2
    cache_path: str | None = None  # SQLite file; None disables caching
    name: str = "http"

    def __post_init__(self):
        super().__post_init__()
        if self.invalid_reply_retries < 0:
            raise ValueError("retry counts cannot be negative")


class ReplyCache:
    """sha256(request) -> reply text, in SQLite (safe to share between processes; WAL journal)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, request TEXT NOT NULL, reply TEXT NOT NULL, created REAL NOT NULL)"
        )

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, request: dict, reply: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO replies (key, request, reply, created) VALUES (?, ?, ?, ?)",
                (key, json.dumps(request, ensure_ascii=False), reply, time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _reply_content(body: str) -> str:
    """The assistant message text of an OpenAI chat completion; the raw body when it isn't one."""
    try:
        data = json.loads(body)
        content = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return body
    return content if isinstance(content, str) else json.dumps(content)


class HTTPJudge(Judge):
    synthetic = False

    def __init__(self, config: HTTPJudgeConfig):
        self.config = config
        self.name = config.name
        self.model = config.model
        self.cache = ReplyCache(config.cache_path) if config.cache_path else None
        self.stats = {"http_requests": 0, "cache_hits": 0, "transport_retries": 0, "invalid_replies": 0, "unavailable": 0}
        self.client = OpenAIClient(ClientSettings.of(config), stats=self.stats)

    # -- request shape ------------------------------------------------------

    def settings(self) -> dict:
        c = self.config
        # The server address is left out on purpose: the same model behind a new port is the same judge.
        settings = {"temperature": c.temperature, "max_tokens": c.max_tokens, "json_mode": c.json_mode}
        if c.top_p is not None:
            settings["top_p"] = c.top_p
        if c.seed is not None:
            settings["seed"] = c.seed
        if c.extra_body:
            settings["extra_body"] = c.extra_body
        settings["invalid_reply_retries"] = c.invalid_reply_retries
        return settings

    def _payload(self, messages: list[dict]) -> dict:
        c = self.config
        payload = {"model": c.model, "messages": messages, "temperature": c.temperature, "max_tokens": c.max_tokens}
        if c.top_p is not None:
            payload["top_p"] = c.top_p
        if c.seed is not None:
            payload["seed"] = c.seed
        if c.json_mode:
            payload["response_format"] = {"type": "json_object"}
        payload.update(c.extra_body)
        return payload

    # -- transport (the shared client) -------------------------------------------

    async def _post(self, payload: dict) -> str:
        try:
            reply = await self.client.post("chat/completions", payload)
        except ServerMisconfigured as exc:
            raise JudgeError(str(exc)) from None
        except RequestRejected as exc:  # a 4xx about this request: not worth repeating
            raise InvalidReply(str(exc)) from None
        return _reply_content(reply.text)

    async def _rank_async(self, request: JudgeRequest) -> JudgeResult:
        labels = request.labels
        keys = [c.key for c in request.criteria]
        messages = ranking_messages(request)
        all_cached = True
        error = None
        content = None
        for attempt in range(self.config.invalid_reply_retries + 1):
            payload = self._payload(messages)
            key = sha256_json(payload)
            content = self.cache.get(key) if self.cache is not None else None
            if content is not None:
                self.stats["cache_hits"] += 1
            else:
                all_cached = False
                try:
                    content = await self._post(payload)
                except Unavailable as exc:
                    self.stats["unavailable"] += 1
                    return JudgeResult(None, error=str(exc), attempts=attempt + 1, retryable=True)
                except InvalidReply as exc:  # a 4xx about this request: not worth repeating
                    return JudgeResult(None, error=str(exc), attempts=attempt + 1)
                if self.cache is not None:
                    self.cache.put(key, payload, content)
            try:
                rankings = parse_ranking_reply(content, labels, keys)
            except InvalidReply as exc:
                self.stats["invalid_replies"] += 1
                error = str(exc)
                messages = [
                    *messages,
                    {"role": "assistant", "content": content},
                    {
                        "role": "user",
                        "content": f"That reply was not valid: {error}. Answer again with only the JSON object.",
                    },
                ]
                continue
            return JudgeResult(rankings, attempts=attempt + 1, cached=all_cached, raw=content)
        return JudgeResult(
            None,
            error=f"invalid reply after {self.config.invalid_reply_retries + 1} attempts: {error}",
            attempts=self.config.invalid_reply_retries + 1,
            cached=all_cached,
            raw=content,
        )

    async def rank_many_async(self, requests: Sequence[JudgeRequest]) -> list[JudgeResult]:
        async with self.client.session():
            return list(await asyncio.gather(*(self._rank_async(r) for r in requests)))

    def rank_many(self, requests: Sequence[JudgeRequest]) -> list[JudgeResult]:
        if not requests:
            return []
        return run_coroutine(self.rank_many_async(requests))

    def rank(self, request: JudgeRequest) -> JudgeResult:
        return self.rank_many([request])[0]

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
            self.cache = None
