"""Stage 2: candidate responses, and answers for evaluation.

``generate_candidates`` writes n sampled responses per scenario (the study: 5,
temperature 0.8, top-p 0.95) with the model's chat template and a system prompt.
``generate_answers`` is the same machinery for evaluation (greedy by default).
``SamplingSettings`` is how answers are drawn (greedy or sampled, length, seed,
system prompt); the server backend (``server_generation``) takes the same object.

Batching: prompts are left-padded (a decoder-only model continues from the last
position, so padding must sit on the left) and sorted by token length so a batch
wastes little padding.

Seeding: every sampled row (scenario, sample index) owns a ``torch.Generator``
seeded from (global seed, scenario id, sample index). Sampling is done by a
logits processor that draws each row's token from that row's generator and
then lets greedy decoding pick it, so a scenario's responses do not depend on
which other scenarios share its batch or on the batch size (up to the tiny
floating-point differences padding can cause in attention).

Resume: the output JSONL is appended one scenario at a time; a rerun skips
scenarios already in it, and refuses to mix settings (different model or
sampling settings need a new output file).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .control import RunControl, StopCheck, run_control
from .io import Scenario, append_jsonl, derive_seed, load_scenarios, read_jsonl_for_resume

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "SamplingSettings",
    "CandidateGenerationConfig",
    "GenerationResult",
    "generate_candidates",
    "generate_answers",
    "build_chat_prompt",
    "encode_prompts",
    "scenario_seed",
    "PerRowSampler",
    "as_scenarios",
    "stored_answers",
    "response_record",
]

log = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = (
    "You are a supportive listener replying to someone who has shared what they are going through. "
    "Reply to them directly, with care, in a few short paragraphs."
)


@dataclass
class SamplingSettings:
    """How answers are drawn, by either backend (``generate_answers`` here, ``server_generation`` on a server).

    Greedy unless ``do_sample``; a sampled row's seed comes from ``seed``, the scenario and the sample index
    (``scenario_seed``), so both backends seed the same rows alike. ``record()`` is what a stored answer says
    about these settings, and what a resumed run compares.
    """

    do_sample: bool = False
    temperature: float = 0.8  # sampling only
    top_p: float = 0.95  # sampling only
    max_new_tokens: int = 256
    seed: int = 0
    system_prompt: str | None = None

    def __post_init__(self):
        self.check()

    def check(self) -> None:
        """Raise ValueError for settings no backend can run (checked again at the call: the object is mutable)."""
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.do_sample and (self.temperature <= 0 or not 0 < self.top_p <= 1):
            raise ValueError("sampling needs temperature > 0 and top_p in (0, 1]")

    @property
    def effective_temperature(self) -> float:
        return self.temperature if self.do_sample else 0.0

    @property
    def effective_top_p(self) -> float:
        return self.top_p if self.do_sample else 1.0

    def record(self) -> dict:
        return {
            "temperature": self.effective_temperature,
            "top_p": self.effective_top_p,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
            "system_prompt": self.system_prompt,
        }


@dataclass
class CandidateGenerationConfig:
    """Settings for ``generate_candidates`` (the ``generate`` CLI stage)."""

    model: str  # packaged name or local HF directory
    scenarios_path: str
    output_path: str
    adapter: str | None = None
    n: int = 5
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 256
    seed: int = 0
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    batch_size: int = 8  # sequences per forward pass (scenarios x samples)
    split: str | None = None  # only scenarios of this split; None = all
    limit: int | None = None  # first N scenarios (after the split filter), for smoke runs
    device: str | None = None  # None: cuda when available, else cpu
    dtype: str | None = None  # e.g. "bfloat16" on GPU; None: float32
    progress_bar: bool = True
    # An OpenAI-compatible server (server_generation.ServerConfig settings) to generate with instead of
    # loading ``model`` here; ``model`` then only names the model in the records' settings check.
    server: dict | None = None

    def __post_init__(self):
        if self.n < 1:
            raise ValueError("n must be at least 1")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0 (use generate_answers(do_sample=False) for greedy)")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")

    @property
    def sampling(self) -> SamplingSettings:
        """Candidates are always sampled, with this config's settings."""
        return SamplingSettings(do_sample=True, temperature=self.temperature, top_p=self.top_p,
                                max_new_tokens=self.max_new_tokens, seed=self.seed, system_prompt=self.system_prompt)


@dataclass
class GenerationResult:
    output_path: str
    total: int  # scenarios asked for
    generated: int  # written by this run
    skipped: int  # already in the output file
    stopped: bool  # the run control asked it to stop early
    seconds: float
    new_tokens: int  # generated tokens in this run (padding excluded)


def scenario_seed(global_seed: int, scenario_id: str, sample_index: int = 0) -> int:
    return derive_seed("generation", global_seed, scenario_id, sample_index)


# ---------------------------------------------------------------------------
# Prompts and batches


def build_chat_prompt(tokenizer, scenario_text: str, system_prompt: str | None) -> str:
    """The model's own chat template around the scenario; falls back when the template rejects a system turn."""
    messages = [{"role": "user", "content": scenario_text}]
    if system_prompt:
        messages.insert(0, {"role": "system", "content": system_prompt})
    if getattr(tokenizer, "chat_template", None):
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # some templates (e.g. Mistral v0.2) raise on a system role
            if not system_prompt:
                raise
            merged = [{"role": "user", "content": f"{system_prompt}\n\n{scenario_text}"}]
            return tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)
    log.warning("tokenizer has no chat template; using a plain-text prompt")
    system = f"{system_prompt}\n\n" if system_prompt else ""
    return f"{system}User: {scenario_text}\nAssistant:"


def encode_prompts(tokenizer, prompts: Sequence[str]):
    """Tokenise a batch with left padding (generation continues from the last position of every row)."""
    previous = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        # The chat template already wrote any BOS the model wants.
        return tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = previous


class PerRowSampler:
    """Logits processor: temperature + top-p sampling with one seeded generator per batch row.

    It returns scores that are -inf everywhere except the drawn token, so greedy decoding emits exactly
    the draw. Every row draws once per step whatever the others do, so a row's text depends only on its
    own seed and its own logits.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float):
        self.seeds = list(seeds)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self._generators = None

    def __call__(self, input_ids, scores):
        import torch

        if self._generators is None:
            self._generators = [torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds]
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_probs, sorted_idx = torch.sort(probs, dim=-1, descending=True)
            before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # mass strictly above each token
            sorted_probs = sorted_probs.masked_fill(before >= self.top_p, 0.0)  # the top token always stays
            probs = torch.zeros_like(probs).scatter(-1, sorted_idx, sorted_probs)
        chosen = torch.empty(scores.shape[0], dtype=torch.long, device=scores.device)
        for row, generator in enumerate(self._generators):
            chosen[row] = torch.multinomial(probs[row], 1, generator=generator)[0]
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(-1, chosen[:, None], 0.0)
        return out


@dataclass(frozen=True)
class _Row:
    scenario_index: int
    sample_index: int
    prompt: str
    n_tokens: int
    seed: int


def _resolve_device(device: str | None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _resolve_dtype(dtype: str | None):
    import torch

    if dtype is None:
        return None
    try:
        return getattr(torch, dtype)
    except AttributeError:
        raise ValueError(f"unknown torch dtype {dtype!r}") from None


def _load(model_ref: str, adapter: str | None, device: str | None, dtype: str | None):
    from .models import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(model_ref)
    model = load_causal_lm(model_ref, adapter=adapter, dtype=_resolve_dtype(dtype))
    model.to(_resolve_device(device))
    model.eval()
    return model, tokenizer


def _generate_batches(
    model,
    tokenizer,
    rows: list[_Row],
    *,
    batch_size: int,
    sampling: SamplingSettings,
    should_stop: StopCheck | None,
) -> Iterator[list[tuple[_Row, str, int]]]:
    """Yield, batch by batch, (row, decoded text, new token count); rows are taken in the given order."""
    import torch
    from transformers import GenerationConfig, LogitsProcessorList

    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    # A clean config: the checkpoint's own sampling defaults (top_k, temperature...) must not leak in.
    gen_config = GenerationConfig(
        do_sample=False, num_beams=1, max_new_tokens=sampling.max_new_tokens, pad_token_id=pad, eos_token_id=eos
    )
    device = next(model.parameters()).device
    for start in range(0, len(rows), batch_size):
        if should_stop is not None and should_stop():
            return
        batch = rows[start : start + batch_size]
        encoded = encode_prompts(tokenizer, [r.prompt for r in batch]).to(device)
        processors = LogitsProcessorList()
        if sampling.do_sample:
            processors.append(PerRowSampler([r.seed for r in batch], sampling.temperature, sampling.top_p))
        with torch.inference_mode():
            output = model.generate(**encoded, generation_config=gen_config, logits_processor=processors)
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        results = []
        for row, tokens in zip(batch, new_tokens):
            keep = tokens[tokens != pad] if pad is not None else tokens
            if eos is not None and pad != eos:
                keep = keep[keep != eos]
            text = tokenizer.decode(keep, skip_special_tokens=True).strip()
            results.append((row, text, int(keep.numel())))
        yield results


def _plan_rows(tokenizer, scenarios: Sequence[Scenario], *, n: int, sampling: SamplingSettings):
    """One row per (scenario, sample), longest prompts first; a scenario's rows stay next to each other."""
    rows = []
    per_scenario = n if sampling.do_sample else 1  # greedy samples are identical: generate once, copy
    for index, scenario in enumerate(scenarios):
        prompt = build_chat_prompt(tokenizer, scenario.prompt, sampling.system_prompt)
        n_tokens = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        for j in range(per_scenario):
            rows.append(_Row(index, j, prompt, n_tokens, scenario_seed(sampling.seed, scenario.scenario_id, j)))
    rows.sort(key=lambda r: (-r.n_tokens, r.scenario_index, r.sample_index))
    return rows


def _run(
    model,
    tokenizer,
    scenarios: Sequence[Scenario],
    *,
    n: int,
    sampling: SamplingSettings,
    batch_size: int,
    should_stop: StopCheck | None,
    on_scenario: Callable[[Scenario, list[str]], None],
) -> int:
    """Generate for all scenarios, calling ``on_scenario`` as each one completes; returns new token count."""
    rows = _plan_rows(tokenizer, scenarios, n=n, sampling=sampling)
    per_scenario = n if sampling.do_sample else 1
    pending: dict[int, dict[int, str]] = {}
    total_tokens = 0
    for results in _generate_batches(model, tokenizer, rows, batch_size=batch_size, sampling=sampling, should_stop=should_stop):
        for row, text, count in results:
            total_tokens += count
            done = pending.setdefault(row.scenario_index, {})
            done[row.sample_index] = text
            if len(done) == per_scenario:
                texts = [done[j] for j in range(per_scenario)]
                if not sampling.do_sample:
                    texts = texts * n
                on_scenario(scenarios[row.scenario_index], texts)
                del pending[row.scenario_index]
    # Scenarios left in `pending` were cut off by should_stop; a rerun redoes them with the same seeds.
    return total_tokens


def _progress(total: int, initial: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, unit="scenario")


# ---------------------------------------------------------------------------
# Public entry points


def _model_label(model: str, adapter: str | None) -> str:
    return f"{model}+{adapter}" if adapter else str(model)


def _check_existing(existing: list[dict], model_label: str, generation: dict, path: Path) -> None:
    """Refuse to add to a responses file written by another model or with other settings (either backend)."""
    for record in existing:
        found = {k: v for k, v in record.get("generation", {}).items() if k in generation}
        if record.get("model") != model_label or found != generation:
            raise ValueError(
                f"{path} already holds responses made with different settings "
                f"(model {record.get('model')!r}, {record.get('generation')}); "
                "write to a new output_path or delete the file"
            )


def stored_answers(output: Path | None, scenarios: Sequence[Scenario], n: int, model_label: str, generation: dict, *,
                   compared: Callable[[dict], dict] = lambda record: record) -> dict[str, list[str]]:
    """What a resumed answers run keeps from ``output``: ``{scenario_id: [n texts]}`` of the asked scenarios.

    ``compared`` turns a stored record into what the settings check sees (a backend drops what a record adds
    beyond the request, such as the model name a server answered with)."""
    if output is None:
        return {}
    existing = read_jsonl_for_resume(output)
    _check_existing([compared(r) for r in existing], model_label, generation, output)
    wanted = {s.scenario_id for s in scenarios}
    return {r["scenario_id"]: list(r["responses"][:n]) for r in existing
            if r["scenario_id"] in wanted and len(r["responses"]) >= n}


def response_record(scenario: Scenario, responses: list[str], model_label: str, generation: dict) -> dict:
    """One line of the candidates format (candidates and stored answers alike)."""
    return {"scenario_id": scenario.scenario_id, "prompt": scenario.prompt, "responses": responses,
            "model": model_label, "generation": generation}


def generate_candidates(
    config: CandidateGenerationConfig,
    control: RunControl | None = None,
    *,
    model=None,
    tokenizer=None,
) -> GenerationResult:
    """Write ``config.n`` sampled responses per scenario to ``config.output_path`` (resumable).

    ``model``/``tokenizer`` may be passed to reuse loaded objects; otherwise they are loaded from the config.
    """
    control = run_control(control)
    if config.server is not None:
        from .server_generation import generate_candidates_with_server

        return generate_candidates_with_server(config, config.server, control=control)
    started = time.monotonic()
    scenarios = load_scenarios(config.scenarios_path, split=config.split)
    if config.limit is not None:
        scenarios = scenarios[: config.limit]
    output = Path(config.output_path)
    model_label = _model_label(config.model, config.adapter)
    sampling = config.sampling
    generation = sampling.record()

    existing = read_jsonl_for_resume(output)
    _check_existing(existing, model_label, generation, output)
    done_ids = {r["scenario_id"] for r in existing}
    todo = [s for s in scenarios if s.scenario_id not in done_ids]
    skipped = len(scenarios) - len(todo)
    total = len(scenarios)

    control.progress(skipped, total)
    if not todo:
        return GenerationResult(str(output), total, 0, skipped, False, time.monotonic() - started, 0)
    if model is None or tokenizer is None:
        model, tokenizer = _load(config.model, config.adapter, config.device, config.dtype)

    written = 0
    bar = _progress(total, skipped, config.progress_bar, "generate")

    def write(scenario: Scenario, texts: list[str]) -> None:
        nonlocal written
        generation_here = {**generation, "scenario_seed": scenario_seed(sampling.seed, scenario.scenario_id)}
        append_jsonl(output, [response_record(scenario, texts, model_label, generation_here)])
        written += 1
        bar.update(1)
        control.progress(skipped + written, total)

    try:
        new_tokens = _run(
            model,
            tokenizer,
            todo,
            n=config.n,
            sampling=sampling,
            batch_size=config.batch_size,
            should_stop=control.should_stop,
            on_scenario=write,
        )
    finally:
        bar.close()
    stopped = written < len(todo)
    return GenerationResult(str(output), total, written, skipped, stopped, time.monotonic() - started, new_tokens)


def as_scenarios(scenarios) -> list[Scenario]:
    """A scenarios file, or a list of ``Scenario`` objects or dicts, as a list of ``Scenario``."""
    if isinstance(scenarios, (str, Path)):
        return load_scenarios(scenarios)
    out = []
    for item in scenarios:
        if isinstance(item, Scenario):
            out.append(item)
        elif isinstance(item, dict):
            out.append(
                Scenario(
                    item["scenario_id"],
                    item["prompt"],
                    item.get("split", "train"),
                    item.get("risk_level", "none"),
                    tuple(item.get("topics", ())),
                )
            )
        else:
            raise TypeError(f"expected Scenario or dict, got {type(item).__name__}")
    return out


def generate_answers(
    model: str | None,
    adapter: str | None,
    scenarios,
    n: int = 1,
    *,
    sampling: SamplingSettings | None = None,
    batch_size: int = 8,
    device: str | None = None,
    dtype: str | None = None,
    output_path: str | Path | None = None,
    control: RunControl | None = None,
    progress_bar: bool = False,
    loaded=None,
) -> dict[str, list[str]]:
    """Answers of one model (base ref +/- adapter) to scenarios: ``{scenario_id: [n texts]}``.

    ``sampling`` None: ``SamplingSettings()``, greedy with no system prompt, as on a server; evaluation passes
    its own. With ``output_path`` the answers are appended there in the candidates format and a rerun
    reuses them; if ``control`` stops the run early the dict holds only finished scenarios.
    ``loaded`` = (model, tokenizer) skips loading.
    """
    control = run_control(control)
    sampling = SamplingSettings() if sampling is None else sampling
    sampling.check()
    scenario_list = as_scenarios(scenarios)
    output = Path(output_path) if output_path is not None else None
    model_label = _model_label(str(model), adapter)
    generation = sampling.record()
    results = stored_answers(output, scenario_list, n, model_label, generation)
    todo = [s for s in scenario_list if s.scenario_id not in results]
    total = len(scenario_list)
    control.progress(len(results), total)
    if not todo:
        return results
    if loaded is not None:
        lm, tokenizer = loaded
    else:
        lm, tokenizer = _load(str(model), adapter, device, dtype)
    bar = _progress(total, len(results), progress_bar, f"answers {model_label}")

    def keep(scenario: Scenario, texts: list[str]) -> None:
        results[scenario.scenario_id] = texts
        if output is not None:
            generation_here = {**generation, "scenario_seed": scenario_seed(sampling.seed, scenario.scenario_id)}
            append_jsonl(output, [response_record(scenario, texts, model_label, generation_here)])
        bar.update(1)
        control.progress(len(results), total)

    try:
        _run(
            lm,
            tokenizer,
            todo,
            n=n,
            sampling=sampling,
            batch_size=batch_size,
            should_stop=control.should_stop,
            on_scenario=keep,
        )
    finally:
        bar.close()
    return results
