"""Candidates and evaluation answers from an OpenAI-compatible inference server (vLLM, llama.cpp's server, TGI).

The local Hugging Face backend (``generation``) runs ``model.generate`` in the
worker; this one sends the same prompts to a server through the shared client
(``openai_client``: bounded concurrency, retries with backoff, Retry-After).

- Endpoints: ``api="chat"`` posts the system prompt and the scenario as chat
  messages to ``/chat/completions`` (the server applies the model's chat
  template); ``api="completions"`` renders the prompt here with the chat
  template of ``prompt_model``'s tokenizer (``generation.build_chat_prompt``,
  the very prompt the local backend sends) and posts it to ``/completions``.
- Sampling: the local backend's settings object (``generation.SamplingSettings``);
  n, temperature, top_p, max_tokens and a seed go with every request. With
  ``sampling_requests="per_sample"`` (the default) each (scenario, sample) row
  is its own request with its own seed (``generation.scenario_seed``, the
  local backend's seeds), so a row's text
  does not depend on what else is in flight; ``"n"`` asks for all n samples in
  one request seeded by the scenario (fewer requests; needs a server that
  honours ``n``, e.g. vLLM). Greedy answers (evaluation) are one request at
  temperature 0, copied n times.
- LoRA policies are served by name: ``model`` is the adapter's name on the
  server (vLLM ``--lora-modules NAME=PATH``; llama.cpp a model alias with
  ``lora_path``).
- Resume: records are appended one scenario at a time in the candidates
  format; a rerun skips scenarios already stored and refuses a file written
  with other settings. A scenario whose request failed after every retry is not
  stored; the run finishes the others and then raises ``ServerGenerationError``
  saying how many are missing, and a rerun does only those.
- Every record says where it came from: ``generation.backend = "server"``, the
  requested model and the model name the server answered with, the endpoint,
  the sampling settings, each sample's seed and finish reason.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .control import RunControl, run_control
from .generation import SamplingSettings, as_scenarios, response_record, scenario_seed, stored_answers
from .io import PipelineConfigError, Scenario, append_jsonl, dataclass_from_dict, load_scenarios
from .openai_client import (
    ClientSettings,
    MalformedReply,
    OpenAIClient,
    RequestRejected,
    ServerError,
    ServerMisconfigured,
    Unavailable,
    run_coroutine,
)

__all__ = [
    "ServerConfig",
    "ServerGenerationError",
    "ServerGenerationResult",
    "server_config",
    "server_problem",
    "generate_with_server",
    "generate_candidates_with_server",
    "generate_answers_with_server",
]

APIS = ("chat", "completions")
SAMPLING_REQUESTS = ("per_sample", "n")


@dataclass(kw_only=True)
class ServerConfig(ClientSettings):
    """An OpenAI-compatible server and the model (or LoRA adapter, by name) it serves; how it is
    reached and retried is ClientSettings' (a longer timeout and no key by default here)."""

    model: str  # the served model's name, or a LoRA adapter's name on the server
    api: str = "chat"  # "chat" (/chat/completions) or "completions" (/completions, prompt rendered here)
    prompt_model: str | None = None  # completions only: the model ref whose chat template renders the prompt
    sampling_requests: str = "per_sample"  # "per_sample" (one seeded request per sample) or "n" (one request of n)
    api_key_env: str | None = None
    timeout_s: float = 300.0
    backoff_max_s: float = 30.0
    extra_body: dict = field(default_factory=dict)  # more request fields (recorded with every response)

    def __post_init__(self):
        # Every problem at once, named by setting (a server is set in the admin's settings), in
        # place of ClientSettings' first-error checks; the ranges include theirs.
        problems = []
        for name in ("base_url", "model"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                problems.append(f"{name}: must not be empty")
        if isinstance(self.base_url, str) and self.base_url.strip() and not self.base_url.startswith(("http://", "https://")):
            problems.append(f"base_url: must start with http:// or https:// (got {self.base_url[:60]!r})")
        for name in ("base_url", "model"):
            value = getattr(self, name)
            if isinstance(value, str) and any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
                problems.append(f"{name}: must not contain spaces or control characters")
        if self.api not in APIS:
            problems.append(f"api: must be one of {', '.join(APIS)} (got {self.api!r})")
        if self.api == "completions" and not self.prompt_model:
            problems.append("prompt_model: the completions api needs the model ref whose chat template renders the prompt")
        if self.sampling_requests not in SAMPLING_REQUESTS:
            problems.append(f"sampling_requests: must be one of {', '.join(SAMPLING_REQUESTS)} (got {self.sampling_requests!r})")
        if not 1 <= self.max_concurrency <= 1024:
            problems.append("max_concurrency: must be from 1 to 1024")
        if not 0 <= self.max_retries <= 100:
            problems.append("max_retries: must be from 0 to 100")
        if not 0 < self.timeout_s <= 86_400:
            problems.append("timeout_s: must be above 0 and at most 86400")
        reserved = {"model", "messages", "prompt", "n", "temperature", "top_p", "max_tokens", "seed"} & set(self.extra_body)
        if reserved:
            problems.append(f"extra_body: {', '.join(sorted(reserved))} are set by the backend")
        if problems:
            raise PipelineConfigError("; ".join(problems))

    def record(self) -> dict:
        """What decides this backend's answers (the address is left out: the same model behind a new port is the same)."""
        out = {"requested_model": self.model, "api": self.api, "sampling_requests": self.sampling_requests}
        if self.prompt_model:
            out["prompt_model"] = str(self.prompt_model)
        if self.extra_body:
            out["extra_body"] = self.extra_body
        return out


def server_config(spec: Any, where: str = "server") -> ServerConfig:
    """A checked ServerConfig from a settings table; PipelineConfigError names the offending key."""
    if isinstance(spec, ServerConfig):
        return spec
    try:
        return dataclass_from_dict(ServerConfig, spec, where)
    except PipelineConfigError as exc:
        message = str(exc)
        raise PipelineConfigError(message if message.startswith(where) else f"{where}: {message}") from None


def server_problem(config: ServerConfig, *, timeout_s: float = 5.0) -> str | None:
    """Why this server cannot be used now (unreachable, not an OpenAI server, model not listed), or None."""
    client = OpenAIClient(ClientSettings.of(config))
    try:
        models = client.list_models(timeout_s=timeout_s)
    except ServerError as exc:
        return f"the server at {config.base_url} is not usable: {exc}"
    if config.model not in models:
        listed = ", ".join(models[:20]) + (" ..." if len(models) > 20 else "") if models else "nothing"
        return f"the server at {config.base_url} does not list the model {config.model!r} (it lists: {listed})"
    return None


class ServerGenerationError(RuntimeError):
    """Some scenarios got no reply after every retry (stored ones are kept; a rerun does the rest), or the
    server refused the requests outright."""

    def __init__(self, message: str, *, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


@dataclass
class ServerGenerationResult:
    output_path: str | None
    total: int  # scenarios asked for
    generated: int  # written by this run
    skipped: int  # already stored
    failed: int  # no reply after every retry (not stored)
    stopped: bool  # the run control asked it to stop early
    seconds: float
    new_tokens: int  # completion tokens the server reported for this run
    served_models: list[str]  # model names the server answered with
    answers: dict[str, list[str]] = field(default_factory=dict, repr=False)  # every stored scenario's responses
    stats: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------
# One request


def _parse_reply(api: str, n: int):
    def validate(body: str) -> dict:
        try:
            data = json.loads(body)
        except ValueError:
            raise MalformedReply("the body is not JSON") from None
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices:
            raise MalformedReply("no choices")
        texts, reasons = [], []
        for choice in sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0):
            text = (choice.get("message") or {}).get("content") if api == "chat" and isinstance(choice, dict) else (
                choice.get("text") if isinstance(choice, dict) else None)
            if not isinstance(text, str):
                raise MalformedReply("a choice without text")
            texts.append(text)
            reasons.append(choice.get("finish_reason"))
        if len(texts) != n:
            raise MalformedReply(f"asked for {n} choices, got {len(texts)}")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        tokens = usage.get("completion_tokens")
        return {"texts": texts, "finish_reasons": reasons, "model": str(data.get("model") or ""),
                "tokens": tokens if isinstance(tokens, int) and tokens >= 0 else None}

    return validate


def _payload(config: ServerConfig, prompt, *, n: int, temperature: float, top_p: float, max_tokens: int, seed: int) -> dict:
    payload: dict[str, Any] = {"model": config.model}
    if config.api == "chat":
        payload["messages"] = prompt
    else:
        payload["prompt"] = prompt
    payload.update({"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "seed": seed})
    if n > 1:
        payload["n"] = n
    payload.update(config.extra_body)
    return payload


@dataclass(frozen=True)
class _Request:
    sample_indexes: tuple[int, ...]
    seed: int
    n: int


def _requests_for(scenario_id: str, *, n: int, sampled: bool, seed: int, mode: str) -> list[_Request]:
    if not sampled:
        return [_Request((0,), scenario_seed(seed, scenario_id, 0), 1)]
    if mode == "n":
        return [_Request(tuple(range(n)), scenario_seed(seed, scenario_id, 0), n)]
    return [_Request((j,), scenario_seed(seed, scenario_id, j), 1) for j in range(n)]


# ---------------------------------------------------------------------------
# The run


def _as_requested(record: dict) -> dict:
    """A stored record as the settings check sees it: without the model name the server answered with (a
    record adds it; the request decides)."""
    generation = record.get("generation", {})
    server = {k: v for k, v in generation.get("server", {}).items() if k != "served_model"}
    return {**record, "generation": {**generation, "server": server}}


def _prompt_builder(config: ServerConfig, system_prompt: str | None):
    if config.api == "chat":
        def chat(text: str):
            messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
            return [*messages, {"role": "user", "content": text}]

        return chat
    from .generation import build_chat_prompt
    from .models import load_tokenizer

    tokenizer = load_tokenizer(config.prompt_model)
    return lambda text: build_chat_prompt(tokenizer, text, system_prompt)


def generate_with_server(
    server: ServerConfig | dict,
    scenarios,
    *,
    n: int = 1,
    sampling: SamplingSettings | None = None,
    output_path: str | Path | None = None,
    control: RunControl | None = None,
) -> ServerGenerationResult:
    """``n`` responses per scenario from the server (sampled, or greedy copied n times), stored as they finish.

    ``sampling`` None: greedy, no system prompt. ``control`` hears ``progress(done, total)`` per scenario and is
    asked ``should_stop()`` before each one.

    Raises ``ServerGenerationError`` after the pass when some scenarios got no reply (retryable) or the server
    rejected the requests (not retryable); ``ServerMisconfigured`` at once for 401/403/404."""
    config = server_config(server)
    control = run_control(control)
    sampling = SamplingSettings() if sampling is None else sampling
    if n < 1:
        raise ValueError("n must be at least 1")
    sampling.check()
    started = time.monotonic()
    scenario_list = as_scenarios(scenarios)
    output = Path(output_path) if output_path is not None else None
    model_label = f"server:{config.model}"
    generation = {"backend": "server", **sampling.record(), "server": config.record()}
    answers = stored_answers(output, scenario_list, n, model_label, generation, compared=_as_requested)
    todo = [s for s in scenario_list if s.scenario_id not in answers]
    total, skipped = len(scenario_list), len(answers)
    control.progress(skipped, total)
    client = OpenAIClient(ClientSettings.of(config))
    result = ServerGenerationResult(str(output) if output else None, total, 0, skipped, 0, False, 0.0, 0, [], answers)
    if not todo:
        result.seconds = time.monotonic() - started
        return result
    build_prompt = _prompt_builder(config, sampling.system_prompt)
    path = "chat/completions" if config.api == "chat" else "completions"
    errors: list[str] = []
    served: set[str] = set()

    async def one_scenario(scenario: Scenario) -> None:
        prompt = build_prompt(scenario.prompt)
        requests = _requests_for(scenario.scenario_id, n=n, sampled=sampling.do_sample, seed=sampling.seed,
                                 mode=config.sampling_requests)
        replies = await asyncio.gather(*(
            client.post(path, _payload(config, prompt, n=r.n, temperature=sampling.effective_temperature,
                                       top_p=sampling.effective_top_p, max_tokens=sampling.max_new_tokens, seed=r.seed),
                        validate=_parse_reply(config.api, r.n))
            for r in requests), return_exceptions=True)
        for reply in replies:
            if isinstance(reply, (ServerMisconfigured, RequestRejected)):
                raise reply
            if isinstance(reply, BaseException) and not isinstance(reply, Unavailable):
                raise reply
        failures = [r for r in replies if isinstance(r, Unavailable)]
        if failures:
            result.failed += 1
            errors.append(str(failures[0]))
            return
        texts: dict[int, str] = {}
        reasons: dict[int, Any] = {}
        seeds: dict[int, int] = {}
        names = []
        for request, reply in zip(requests, replies):
            data = reply.data
            names.append(data["model"])
            result.new_tokens += data["tokens"] if data["tokens"] is not None else sum(len(t.split()) for t in data["texts"])
            for index, text, reason in zip(request.sample_indexes, data["texts"], data["finish_reasons"]):
                texts[index], reasons[index], seeds[index] = text.strip(), reason, request.seed
        count = len(texts)
        responses = [texts[j] for j in range(count)]
        if count < n:  # greedy: one answer, copied
            responses, reasons_list, seed_list = responses * n, [reasons[0]] * n, [seeds[0]] * n
        else:
            reasons_list, seed_list = [reasons[j] for j in range(n)], [seeds[j] for j in range(n)]
        served.update(names)
        answers[scenario.scenario_id] = responses
        if output is not None:
            generation_here = {
                **generation,
                "server": {**generation["server"], "served_model": names[0] if len(set(names)) == 1 else names},
                "scenario_seed": scenario_seed(sampling.seed, scenario.scenario_id),
                "sample_seeds": seed_list,
                "finish_reasons": reasons_list,
            }
            append_jsonl(output, [response_record(scenario, responses, model_label, generation_here)])
        result.generated += 1
        control.progress(skipped + result.generated, total)

    async def main() -> None:
        queue = list(reversed(todo))

        async def worker():
            while queue:
                if control.should_stop():
                    result.stopped = True
                    return
                await one_scenario(queue.pop())

        async with client.session():
            workers = [asyncio.create_task(worker()) for _ in range(min(config.max_concurrency, len(todo)))]
            try:
                await asyncio.gather(*workers)
            except BaseException:
                for task in workers:
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                raise

    try:
        run_coroutine(main())
    except ServerMisconfigured:
        raise
    except RequestRejected as exc:
        raise ServerGenerationError(f"the server at {config.base_url} rejected a request for {config.model!r}: {exc}",
                                    retryable=False) from None
    result.served_models = sorted(served)
    result.seconds = time.monotonic() - started
    result.stats = dict(client.stats)
    if result.failed and not result.stopped:
        raise ServerGenerationError(
            f"{result.failed} of {len(todo)} scenarios got no reply from {config.base_url} ({config.model!r}) after "
            f"{config.max_retries + 1} attempts each (first error: {errors[0]}); the {skipped + result.generated} stored "
            "are kept and a rerun asks only for the rest", retryable=True)
    return result


def generate_candidates_with_server(config, server: ServerConfig | dict, *,
                                    control: RunControl | None = None) -> ServerGenerationResult:
    """The ``generate`` stage through a server: ``config`` is the local backend's candidate settings
    (scenarios, split, limit, output, n, and its ``sampling``)."""
    scenarios = load_scenarios(config.scenarios_path, split=config.split)
    if config.limit is not None:
        scenarios = scenarios[: config.limit]
    return generate_with_server(server, scenarios, n=config.n, sampling=config.sampling, output_path=config.output_path,
                                control=control)


def generate_answers_with_server(server: ServerConfig | dict, scenarios: Sequence[Scenario], n: int = 1, *,
                                 sampling: SamplingSettings | None = None, output_path: str | Path | None = None,
                                 control: RunControl | None = None) -> dict[str, list[str]]:
    """Evaluation answers through a server: ``{scenario_id: [n texts]}`` (greedy by default), like
    ``generation.generate_answers``; with ``output_path`` resumable in the same format."""
    return generate_with_server(server, scenarios, n=n, sampling=sampling, output_path=output_path, control=control).answers
