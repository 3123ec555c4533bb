"""The HTTP judge against a real OpenAI-compatible server on loopback."""
from __future__ import annotations

import json
import time

import pytest

from training.pipeline.criteria import get_criterion
from training.pipeline.io import Persona, Scenario
from training.pipeline.judges import JudgeError, JudgeRequest, build_judge
from training.pipeline.judges.http import HTTPJudge, HTTPJudgeConfig, _retry_after_seconds
from training.pipeline.judges.loopback import LoopbackChatServer, prompt_labels_and_keys
from training.pipeline.judges.prompts import InvalidReply, parse_ranking_reply

CRITERIA = (get_criterion("empathy"), get_criterion("safety"))


def _request(i: int = 0, k: int = 3) -> JudgeRequest:
    return JudgeRequest(
        Persona(f"p{i}", f"Persona {i}: prefers gentle replies."),
        Scenario(f"s{i}", "I have not slept for days and feel hopeless.", risk_level="moderate"),
        tuple(f"response {j} for {i}" for j in range(k)),
        CRITERIA,
    )


@pytest.fixture
def server():
    with LoopbackChatServer() as running:
        yield running


def _judge(server, tmp_path, **overrides) -> HTTPJudge:
    settings = dict(
        base_url=server.url, model="test-model", api_key_env=None, backoff_initial_s=0.01, backoff_max_s=0.05,
        timeout_s=5.0, cache_path=str(tmp_path / "cache.sqlite"),
    )
    settings.update(overrides)
    return HTTPJudge(HTTPJudgeConfig(**settings))


def test_parse_reply_is_strict():
    labels, keys = ["A", "B", "C"], ["empathy", "safety"]
    assert parse_ranking_reply('```json\n{"empathy": ["b","A","C"], "safety": ["C","B","A"]}\n```', labels, keys) == {
        "empathy": [1, 0, 2], "safety": [2, 1, 0]}
    for bad in ('{"empathy": ["A","B","C"]}', '{"empathy": ["A","B"], "safety": ["A","B","C"]}',
                '{"empathy": ["A","A","C"], "safety": ["A","B","C"]}', "I like A best", '["A","B","C"]', ""):
        with pytest.raises(InvalidReply):
            parse_ranking_reply(bad, labels, keys)


def test_prompt_carries_persona_labels_and_criterion_wording(server, tmp_path):
    judge = _judge(server, tmp_path)
    result = judge.rank(_request())
    assert result.ok and result.rankings == {"empathy": [0, 1, 2], "safety": [0, 1, 2]}
    payload = server.payloads[0]
    assert payload["model"] == "test-model" and payload["response_format"] == {"type": "json_object"}
    assert "Persona 0" in payload["messages"][0]["content"]
    assert prompt_labels_and_keys(payload) == (["A", "B", "C"], ["empathy", "safety"])
    assert get_criterion("safety").better_when in payload["messages"][1]["content"]


def test_429_is_retried_and_retry_after_honoured(server, tmp_path):
    server.then_status(429, {"Retry-After": "1"})
    judge = _judge(server, tmp_path)
    started = time.monotonic()
    result = judge.rank(_request())
    elapsed = time.monotonic() - started
    assert result.ok and server.requests == 2
    assert elapsed >= 0.95  # waited for Retry-After, not the 0.01 s backoff
    assert judge.stats["transport_retries"] == 1


def test_5xx_retried_then_unavailable_is_retryable(server, tmp_path):
    for _ in range(3):
        server.then_status(503)
    judge = _judge(server, tmp_path, max_retries=2)
    result = judge.rank(_request())
    assert not result.ok and result.retryable and "HTTP 503" in result.error
    assert server.requests == 3
    assert judge.rank(_request()).ok  # the server recovered; nothing bad was cached


def test_fatal_status_raises(server, tmp_path):
    server.then_status(401)
    with pytest.raises(JudgeError, match="401"):
        _judge(server, tmp_path).rank(_request())


def test_malformed_reply_retried_then_counted_and_skipped_and_replayed_from_cache(server, tmp_path):
    server.then_content("not json at all").then_content('{"empathy": ["A"]}')
    judge = _judge(server, tmp_path, invalid_reply_retries=1)
    result = judge.rank(_request())
    assert not result.ok and not result.retryable and result.attempts == 2
    assert "invalid reply" in result.error and judge.stats["invalid_replies"] == 2
    # The retry is a correction turn that quotes the bad reply.
    assert server.payloads[1]["messages"][-2] == {"role": "assistant", "content": "not json at all"}
    judge.close()
    # A rerun replays the same conversation from the cache: same outcome, no new requests.
    rerun = _judge(server, tmp_path, invalid_reply_retries=1)
    again = rerun.rank(_request())
    assert not again.ok and again.cached and server.requests == 2


def test_malformed_then_valid(server, tmp_path):
    server.then_content("{oops")
    result = _judge(server, tmp_path).rank(_request())
    assert result.ok and result.attempts == 2 and server.requests == 2


def test_timeouts_are_retried(server, tmp_path):
    server.then_delay(1.5)
    judge = _judge(server, tmp_path, timeout_s=0.3)
    result = judge.rank(_request())
    assert result.ok and server.requests == 2 and judge.stats["transport_retries"] == 1


def test_rerun_served_fully_from_cache(server, tmp_path):
    requests = [_request(i) for i in range(6)]
    first = _judge(server, tmp_path).rank_many(requests)
    assert all(r.ok for r in first) and server.requests == 6
    rerun = _judge(server, tmp_path)
    second = rerun.rank_many(requests)
    assert server.requests == 6 and rerun.stats["cache_hits"] == 6 and rerun.stats["http_requests"] == 0
    assert [r.rankings for r in second] == [r.rankings for r in first] and all(r.cached for r in second)


def test_concurrency_is_bounded(tmp_path):
    with LoopbackChatServer(latency_s=0.1) as slow:
        judge = _judge(slow, tmp_path, max_concurrency=3, cache_path=None)
        started = time.monotonic()
        results = judge.rank_many([_request(i) for i in range(12)])
        elapsed = time.monotonic() - started
    assert all(r.ok for r in results)
    assert slow.max_in_flight == 3
    assert elapsed < 12 * 0.1 * 0.8  # it did run concurrently


def test_build_judge_from_table_rejects_unknown_keys():
    from training.pipeline.io import PipelineConfigError

    with pytest.raises(PipelineConfigError, match="unknown key 'temprature'"):
        build_judge({"backend": "http", "base_url": "http://x/v1", "model": "m", "temprature": 0})
    with pytest.raises(PipelineConfigError, match="backend"):
        build_judge({"backend": "carrier-pigeon"})


def test_retry_after_parsing():
    assert _retry_after_seconds("3") == 3.0
    assert _retry_after_seconds(None) is None
    assert 0 <= _retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") < 1  # a past date: no wait
    assert _retry_after_seconds("soon") is None


def test_info_records_model_and_settings(server, tmp_path):
    info = _judge(server, tmp_path, temperature=0.2).info()
    assert info["model"] == "test-model" and info["settings"]["temperature"] == 0.2 and info["synthetic"] is False
    assert json.dumps(info)  # recorded with every label
