"""4-bit QLoRA: the settings, the refusal where a worker cannot run it, the lineage card, the same quantised
base for evaluation and merging, and one tiny 4-bit training step on bitsandbytes' CPU backend."""
from __future__ import annotations

import json

import pytest

from training.pipeline.policies.common import POLICY_CARD, PolicyConfig, load_policy_model, trainer_args_kwargs
from training.pipeline.quantization import (
    QLORA_OPTIMIZER,
    QuantizationUnavailable,
    bitsandbytes_config,
    load_quantized_base,
    qlora_problem,
    quantization_problem,
    quantization_record,
)


def test_the_study_setting():
    import torch

    config = bitsandbytes_config()
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.bfloat16
    record = quantization_record("nf4")
    assert record == {"method": "qlora", "quant_type": "nf4", "bits": 4, "double_quant": True, "compute_dtype": "bfloat16",
                      "optimizer": "paged_adamw_32bit", "bitsandbytes": "0.50.2"}
    assert quantization_record(None) is None


def test_a_worker_without_cuda_is_refused_clearly():
    problem = qlora_problem()
    assert problem.startswith("4-bit QLoRA needs a CUDA GPU and this worker has none")
    assert quantization_problem("nf4") == problem
    assert quantization_problem(None) is None
    assert "unknown quantization 'int3'" in quantization_problem("int3")


def test_policy_config_path(tiny_lm_dir, tmp_path):
    config = PolicyConfig(output_dir=tmp_path / "p", base_model=str(tiny_lm_dir), quantization="nf4")
    assert trainer_args_kwargs(config, tmp_path / "ck")["optim"] == QLORA_OPTIMIZER
    assert "optim" not in trainer_args_kwargs(PolicyConfig(output_dir=tmp_path / "q"), tmp_path / "ck")
    from training.pipeline.policies.common import load_base_model

    with pytest.raises(QuantizationUnavailable, match="needs a CUDA GPU"):
        load_base_model(config)
    with pytest.raises(ValueError, match="cannot full fine-tune"):
        load_base_model(PolicyConfig(output_dir=tmp_path / "f", base_model=str(tiny_lm_dir), quantization="nf4",
                                     full_finetune=True))


def test_an_adapter_trained_on_a_4bit_base_is_never_loaded_on_full_precision(tiny_lm_dir, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_lm_dir)}))
    (adapter / POLICY_CARD).write_text(json.dumps({"method": "dpo", "base_model_dir": str(tiny_lm_dir),
                                                   "quantization": quantization_record("nf4")}))
    with pytest.raises(QuantizationUnavailable, match="needs a CUDA GPU"):
        load_policy_model(adapter)


def test_adapters_on_4bit_and_full_precision_bases_are_not_merged(tiny_lm_dir, tmp_path):
    from training.pipeline.policies.merge import MergeConfig, merge_adapters

    adapters = {}
    for name, quantization in (("empathy", quantization_record("nf4")), ("safety", None)):
        path = tmp_path / name
        path.mkdir()
        (path / POLICY_CARD).write_text(json.dumps({"method": "dpo", "base_model_dir": str(tiny_lm_dir),
                                                    "lora_init_seed": 0, "quantization": quantization}))
        adapters[name] = path
    with pytest.raises(ValueError, match="4-bit base and on a full-precision base cannot be merged"):
        merge_adapters(MergeConfig(base_model=tiny_lm_dir, adapters=adapters, weights={"empathy": 0.5, "safety": 0.5},
                                   output_dir=tmp_path / "merged"))


def test_one_4bit_lora_step_on_the_cpu_backend(tmp_path):
    # bitsandbytes 0.50 has a CPU backend for NF4 (block size 64: the tiny model needs a hidden size of 64 or more).
    import bitsandbytes as bnb
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from training.pipeline.policies.common import attach_lora

    assert qlora_problem(device="cpu") is None
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=2)).save_pretrained(tmp_path / "base")
    model = load_quantized_base(tmp_path / "base", device="cpu")
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    model = attach_lora(model, PolicyConfig(output_dir=tmp_path / "p", lora_rank=4, lora_alpha=8,
                                            lora_target_modules=("q_proj", "v_proj")))
    trainable = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    optimizer = bnb.optim.PagedAdamW32bit(trainable, lr=1e-2)
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(2):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss))
    assert all(torch.isfinite(torch.tensor(losses))) and losses[1] < losses[0]
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, trainable))
