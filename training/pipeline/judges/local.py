"""A judge that runs a local Hugging Face causal LM and reads its choice likelihoods.

No text is generated and no JSON is parsed. For each criterion and each pair of
responses (i, j) the model sees a prompt ending "Answer with a single letter, A
or B" twice, once with i as A and once with j as A. From the next-token
distribution it takes d = log P("A") - log P("B") (each letter's probability
summed over its tokenisations with and without a leading space). The
preference for i over j is d(i as A) - d(j as A): a constant pull towards
"A" or "B" cancels out. i wins the pair when the preference is positive, j
when negative, half each when zero.

Ranking per criterion: most pairwise wins first, then larger summed preference
margin, then shown position - so the result is always a permutation.
Cost: K(K-1) prompts per criterion (20 for K=5), batched.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from .base import Judge, JudgeRequest, JudgeResult, ranking_from_scores
from .prompts import pairwise_messages

__all__ = ["LocalJudgeConfig", "LocalLikelihoodJudge"]


@dataclass
class LocalJudgeConfig:
    model: str  # packaged name or local HF directory
    adapter: str | None = None
    batch_size: int = 8
    device: str | None = None
    dtype: str | None = None
    max_response_chars: int = 2000  # longer responses are cut (the prompt holds two)
    name: str = "local"


class LocalLikelihoodJudge(Judge):
    synthetic = False

    def __init__(self, config: LocalJudgeConfig, *, loaded=None):
        self.config = config
        self.name = config.name
        self.model = f"{config.model}+{config.adapter}" if config.adapter else str(config.model)
        self._loaded = loaded
        self._choice_ids = None

    def settings(self) -> dict:
        return {"method": "pairwise-choice-logprob", "both_orders": True, "max_response_chars": self.config.max_response_chars}

    def _ensure_loaded(self):
        if self._loaded is None:
            from ..generation import _load

            self._loaded = _load(self.config.model, self.config.adapter, self.config.device, self.config.dtype)
        if self._choice_ids is None:
            _, tokenizer = self._loaded
            self._choice_ids = (_letter_ids(tokenizer, "A"), _letter_ids(tokenizer, "B"))
            if set(self._choice_ids[0]) & set(self._choice_ids[1]):
                raise ValueError("the judge tokenizer does not tell 'A' and 'B' apart")
        return self._loaded

    def _prompt(self, tokenizer, request: JudgeRequest, first: str, second: str, spec) -> str:
        cut = self.config.max_response_chars
        messages = pairwise_messages(request.persona.text, request.scenario.prompt, first[:cut], second[:cut], spec)
        if getattr(tokenizer, "chat_template", None):
            try:
                return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except Exception:  # templates without a system role
                merged = [{"role": "user", "content": messages[0]["content"] + "\n\n" + messages[1]["content"]}]
                return tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)
        return f"{messages[0]['content']}\n\n{messages[1]['content']}\nAnswer:"

    def _choice_margins(self, prompts: list[str]) -> list[float]:
        """log P(A) - log P(B) for the next token after each prompt."""
        import torch

        model, tokenizer = self._ensure_loaded()
        a_ids, b_ids = self._choice_ids
        device = next(model.parameters()).device
        margins: list[float] = []
        previous_side = tokenizer.padding_side
        tokenizer.padding_side = "right"  # read each row's logits at its own last real token
        try:
            for start in range(0, len(prompts), self.config.batch_size):
                chunk = prompts[start : start + self.config.batch_size]
                encoded = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                with torch.inference_mode():
                    logits = model(**encoded).logits
                last = encoded["attention_mask"].sum(dim=1) - 1
                rows = logits[torch.arange(logits.shape[0], device=device), last].float()
                logp = torch.log_softmax(rows, dim=-1)
                log_a = torch.logsumexp(logp[:, a_ids], dim=-1)
                log_b = torch.logsumexp(logp[:, b_ids], dim=-1)
                margins.extend((log_a - log_b).tolist())
        finally:
            tokenizer.padding_side = previous_side
        return margins

    def rank(self, request: JudgeRequest) -> JudgeResult:
        return self.rank_many([request])[0]

    def rank_many(self, requests) -> list[JudgeResult]:
        _, tokenizer = self._ensure_loaded()
        # One flat list of prompts for all requests, so batches stay full.
        plan = []
        prompts: list[str] = []
        for r_index, request in enumerate(requests):
            responses = request.responses
            for spec in request.criteria:
                for i, j in combinations(range(len(responses)), 2):
                    plan.append((r_index, spec.key, i, j))
                    prompts.append(self._prompt(tokenizer, request, responses[i], responses[j], spec))
                    prompts.append(self._prompt(tokenizer, request, responses[j], responses[i], spec))
        margins = self._choice_margins(prompts) if prompts else []

        wins = [{spec.key: [0.0] * len(r.responses) for spec in r.criteria} for r in requests]
        totals = [{spec.key: [0.0] * len(r.responses) for spec in r.criteria} for r in requests]
        for n, (r_index, key, i, j) in enumerate(plan):
            preference = margins[2 * n] - margins[2 * n + 1]  # > 0: i preferred over j
            w, t = wins[r_index][key], totals[r_index][key]
            if preference > 0:
                w[i] += 1.0
            elif preference < 0:
                w[j] += 1.0
            else:
                w[i] += 0.5
                w[j] += 0.5
            t[i] += preference
            t[j] -= preference
        results = []
        for r_index, request in enumerate(requests):
            rankings = {
                spec.key: ranking_from_scores(wins[r_index][spec.key], tiebreak=totals[r_index][spec.key])
                for spec in request.criteria
            }
            results.append(JudgeResult(rankings, scores={k: list(v) for k, v in wins[r_index].items()}))
        return results


def _letter_ids(tokenizer, letter: str) -> list[int]:
    ids = set()
    for text in (letter, " " + letter):
        encoded = tokenizer.encode(text, add_special_tokens=False)
        if encoded:
            # A leading-space form may tokenise as [space, letter] in some vocabularies: take the letter's token.
            ids.add(encoded[-1] if len(encoded) > 1 and tokenizer.decode(encoded[-1:]).strip() == letter else encoded[0])
    return sorted(ids)
