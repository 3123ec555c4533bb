"""A small OpenAI-compatible server on 127.0.0.1, for tests, benchmarks and offline demos.

It answers ``POST /v1/chat/completions`` with a ranking built by a reply
function (default: the labels in the order shown, for every criterion the
prompt asks about), after an optional fixed latency. ``POST /v1/completions``
answers with the same reply function (its payload carries ``prompt``), ``n``
choices are that many calls of it, and ``GET /v1/models`` lists ``models``. A script of one-off
actions (an HTTP status with headers, a delay, a literal reply) is consumed
first, one action per request, to exercise retries. It counts requests and the
most requests it ever had in flight.
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..lifecycle import StartStop

__all__ = ["LoopbackChatServer", "ordered_ranking_reply", "prompt_labels_and_keys"]

_LABELS = re.compile(r"There are \d+ replies, labelled ([A-Z](?:, [A-Z])*)\.")
_KEYS = re.compile(r"Its keys are exactly the criterion keys \(([^)]*)\)")


def prompt_labels_and_keys(payload: dict) -> tuple[list[str], list[str]]:
    """The labels and criterion keys a ranking prompt (``prompts.ranking_messages``) asks for."""
    text = next(m["content"] for m in payload["messages"] if m["role"] == "user")
    labels = _LABELS.search(text)
    keys = _KEYS.search(text)
    if not labels or not keys:
        raise ValueError("not a ranking prompt")
    return labels.group(1).split(", "), [k.strip() for k in keys.group(1).split(",")]


def ordered_ranking_reply(payload: dict) -> str:
    labels, keys = prompt_labels_and_keys(payload)
    return json.dumps({key: labels for key in keys})


def _completion(content: str, model: str) -> dict:
    return _choices([content], model, chat=True)


def _choices(contents: list[str], model: str, *, chat: bool) -> dict:
    def choice(index: int, text: str) -> dict:
        if chat:
            return {"index": index, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        return {"index": index, "text": text, "finish_reason": "stop"}

    tokens = sum(len(text.split()) for text in contents)
    return {
        "id": "chatcmpl-loopback" if chat else "cmpl-loopback",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice(i, text) for i, text in enumerate(contents)],
        "usage": {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens},
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # listen() backlog: a burst of concurrent judge calls must not be refused


class LoopbackChatServer(StartStop):
    def __init__(self, reply: Callable[[dict], str] = ordered_ranking_reply, *, latency_s: float = 0.0,
                 models: tuple[str, ...] = ("loopback",), answer_model: str | None = None):
        self.reply = reply
        self.answer_model = answer_model  # the model name replies carry; None: the one asked for
        self.latency_s = latency_s
        self.models = tuple(models)
        self.script: deque = deque()
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.payloads: list[dict] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Script actions: ("status", code, headers, body), ("delay", seconds), ("content", text), ("body", raw 200 body)
    def then_status(self, code: int, headers: dict | None = None, body: str = "") -> LoopbackChatServer:
        self.script.append(("status", code, headers or {}, body))
        return self

    def then_delay(self, seconds: float) -> LoopbackChatServer:
        self.script.append(("delay", seconds))
        return self

    def then_content(self, text: str) -> LoopbackChatServer:
        self.script.append(("content", text))
        return self

    def then_body(self, body: str) -> LoopbackChatServer:
        """A 200 reply with this literal body (a malformed reply, for the clients' tests)."""
        self.script.append(("body", body))
        return self

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> LoopbackChatServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as separate writes; with Nagle on, the body waits for the client's
            # delayed ACK (~40 ms on Linux), which would swamp the latency this server is meant to model.
            disable_nagle_algorithm = True

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                if self.path.rstrip("/") != "/v1/models":
                    return self._send(404, {}, json.dumps({"error": "not found"}))
                data = [{"id": name, "object": "model", "owned_by": "loopback"} for name in owner.models]
                return self._send(200, {}, json.dumps({"object": "list", "data": data}))

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with owner._lock:
                    owner.requests += 1
                    owner.in_flight += 1
                    owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
                    action = owner.script.popleft() if owner.script else None
                try:
                    self._answer(raw, action)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)
                finally:
                    with owner._lock:
                        owner.in_flight -= 1

            def _answer(self, raw: bytes, action):
                path = self.path.rstrip("/")
                if path not in ("/v1/chat/completions", "/v1/completions"):
                    return self._send(404, {}, json.dumps({"error": "not found"}))
                try:
                    payload = json.loads(raw)
                except ValueError:
                    return self._send(400, {}, json.dumps({"error": "bad json"}))
                with owner._lock:
                    owner.payloads.append(payload)
                if owner.latency_s:
                    time.sleep(owner.latency_s)
                if action is not None and action[0] == "status":
                    return self._send(action[1], action[2], action[3] or json.dumps({"error": f"status {action[1]}"}))
                if action is not None and action[0] == "delay":
                    time.sleep(action[1])
                if action is not None and action[0] == "body":
                    return self._send(200, {}, action[1])
                if action is not None and action[0] == "content":
                    contents = [action[1]]
                else:
                    n = payload.get("n") if isinstance(payload.get("n"), int) and payload.get("n") > 0 else 1
                    contents = [owner.reply(payload) for _ in range(n)]
                body = _choices(contents, owner.answer_model or payload.get("model", ""), chat=path.endswith("chat/completions"))
                return self._send(200, {}, json.dumps(body))

            def _send(self, code: int, headers: dict, body: str):
                data = body.encode("utf-8")
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
