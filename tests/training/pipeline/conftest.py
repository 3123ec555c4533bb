"""Shared fixtures for the ML library tests: tiny models built in code and a small preference dataset.

Everything here is session-scoped and cheap (a few seconds in total); no model hub is contacted.
"""
from __future__ import annotations

import json
import os

# Must be set before transformers/datasets are imported anywhere in the session.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

import pytest


_HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: loads the real packaged models (GGUF conversion, MiniLM); minutes on a CPU")


def pytest_collection_modifyitems(config, items):
    # Without any -m expression (e.g. no project pytest config), slow tests are skipped unless
    # ATTUNE_SLOW_TESTS=1; with one (the project's `-m "not slow"`, or `-m slow`), pytest decides.
    if os.environ.get("ATTUNE_SLOW_TESTS") == "1" or config.getoption("-m"):
        return
    skip = pytest.mark.skip(reason="slow: real packaged models; run with -m slow or ATTUNE_SLOW_TESTS=1")
    for item in items:
        if "slow" in item.keywords and str(item.fspath).startswith(_HERE):
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _few_torch_threads():
    # The test machine has 2 shared cores; more threads only add contention on tiny models.
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory):
    from training.pipeline.models import build_tiny_causal_lm

    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny_lm"), seed=0)


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory):
    from training.pipeline.models import build_tiny_sequence_classifier

    return build_tiny_sequence_classifier(tmp_path_factory.mktemp("tiny_rm"), seed=0)


# Scenario prompts and two responses per scenario: the "good" one is warm and safe, the "bad" one dismissive.
PREFERENCE_ROWS = [
    ("s1", "I have been feeling low and alone since my move.", "That sounds really hard. I am here with you.", "Just get over it."),
    ("s2", "My chest gets tight every morning before work.", "That sounds frightening. Would it help to talk about it?", "Everyone feels that."),
    ("s3", "I keep thinking it was my fault that she left.", "It makes sense you are hurting. You deserve kindness.", "Maybe it was."),
    ("s4", "Sometimes I think about hurting myself.", "Thank you for telling me. Please reach out to a crisis line now.", "Try to sleep more."),
    ("s5", "Nobody at school talks to me anymore.", "I hear how lonely that is. What has that been like?", "Make new friends then."),
    ("s6", "I cannot stop crying and I do not know why.", "That sounds exhausting. Your feelings matter.", "Crying is pointless."),
]


def make_preference_dataset_dict(criteria=("empathy", "safety"), rows=PREFERENCE_ROWS):
    """The preference dataset layout the labeling stage writes: one split per criterion, raw texts."""
    from datasets import Dataset, DatasetDict

    splits = {}
    for index, criterion in enumerate(criteria):
        records = []
        for scenario_id, prompt, good, bad in rows:
            # For the second criterion flip one pair so criteria disagree somewhere (margins are then non-trivial).
            chosen, rejected = (bad, good) if (index == 1 and scenario_id == "s5") else (good, bad)
            records.append(
                {
                    "prompt": prompt,
                    "chosen": chosen,
                    "rejected": rejected,
                    "scenario_id": scenario_id,
                    "criterion": criterion,
                    "source": "judge:rubric",
                    "chosen_score": 10.0,
                    "rejected_score": -10.0,
                }
            )
        splits[criterion] = Dataset.from_list(records)
    return DatasetDict(splits)


@pytest.fixture(scope="session")
def preference_dataset_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("preferences")
    dataset = make_preference_dataset_dict()
    dataset.save_to_disk(str(out))
    (out / "card.json").write_text(json.dumps({"criteria": list(dataset.keys()), "synthetic": True}))
    return out
