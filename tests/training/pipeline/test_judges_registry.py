"""The judge registry: one check of a judge table, naming the setting at fault."""
import pytest

from training.pipeline.io import PipelineConfigError
from training.pipeline.judges.http import HTTPJudgeConfig
from training.pipeline.judges.registry import JUDGES, build_judge, judge_config, register_judge
from training.pipeline.judges.rubric import RubricJudge

HTTP = {"backend": "http", "base_url": "http://127.0.0.1:8001/v1", "model": "judge"}


def test_a_table_becomes_its_backend_s_config():
    backend, config = judge_config({**HTTP, "temperature": 0.3})
    assert backend is JUDGES["http"] and isinstance(config, HTTPJudgeConfig) and config.temperature == 0.3
    assert isinstance(build_judge({"backend": "rubric"}), RubricJudge)


@pytest.mark.parametrize("table,message", [
    ({**HTTP, "modle": "x"}, "judge: unknown key 'modle'; allowed: base_url, model,"),
    ({"backend": "http", "model": "judge"}, "judge: missing required key 'base_url'"),
    ({**HTTP, "base_url": " "}, "judge.base_url: must not be empty"),
    ({**HTTP, "temperature": "warm"}, "judge.temperature"),
    ({**HTTP, "max_concurrency": 0}, "max_concurrency must be at least 1"),
    ({"kind": "http", "modle": "x"}, "judge: missing required key 'backend' (one of http, local, rubric); got 'kind', 'modle'"),
    ({"backend": "oracle"}, "judge.backend: must be one of http, local, rubric, got 'oracle'"),
    ("rubric", "judge: expected a table with a 'backend' key"),
])
def test_a_bad_table_names_the_setting(table, message):
    with pytest.raises(PipelineConfigError) as caught:
        judge_config(table)
    assert message in str(caught.value)


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        register_judge("rubric", judge="x:Y", config="x:Z")
