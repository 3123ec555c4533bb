from __future__ import annotations

import json

import pytest
import torch

from training.pipeline.models import load_causal_lm
from training.pipeline.policies.common import POLICY_CARD, PolicyConfig, attach_lora, load_policy_model
from training.pipeline.policies.merge import MergeConfig, merge_adapters, safe_adapter_name


def make_adapter(tiny_lm_dir, out, *, seed, rank=4, init_seed=0):
    """A LoRA adapter with random (non-zero) A and B, saved like a trained policy's adapter."""
    config = PolicyConfig(output_dir=out, base_model=str(tiny_lm_dir), lora_rank=rank, lora_alpha=2 * rank,
                          lora_target_modules=("q_proj", "v_proj"), lora_init_seed=init_seed)
    model = attach_lora(load_causal_lm(tiny_lm_dir), config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "lora_A" in name:
                param.add_(torch.randn(param.shape, generator=generator) * 0.3)
    model.save_pretrained(str(out))
    (out / POLICY_CARD).write_text(json.dumps({"base_model_dir": str(tiny_lm_dir), "base_adapter": None,
                                               "lora_init_seed": init_seed}))
    return out


def delta_weights(tiny_lm_dir, adapter_dir):
    """{module name: delta W} of one adapter, from PEFT's own get_delta_weight."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    model = PeftModel.from_pretrained(load_causal_lm(tiny_lm_dir), str(adapter_dir))
    name = model.active_adapter
    return {
        module_name.replace("base_model.model.", ""): module.get_delta_weight(name).detach().clone()
        for module_name, module in model.named_modules()
        if isinstance(module, LoraLayer) and name in module.lora_A
    }


@pytest.fixture(scope="module")
def two_adapters(tiny_lm_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return {
        "dpo.empathy": make_adapter(tiny_lm_dir, root / "empathy", seed=1),
        "dpo.safety": make_adapter(tiny_lm_dir, root / "safety", seed=2),
    }


@pytest.mark.parametrize("weights", [{"dpo.empathy": 0.7, "dpo.safety": 0.3}, {"dpo.empathy": 1.5, "dpo.safety": -0.4}])
def test_cat_merge_is_the_weighted_sum_of_updates(tiny_lm_dir, two_adapters, tmp_path, weights):
    merged = merge_adapters(MergeConfig(base_model=tiny_lm_dir, adapters=two_adapters, weights=weights,
                                        output_dir=tmp_path / "merged", method="cat"))
    metadata = json.loads((merged / "merge.json").read_text())
    assert metadata["exact"] and not metadata["paper_style"] and metadata["merged_rank"] == 8

    expected = {}
    for name, path in two_adapters.items():
        for module, delta in delta_weights(tiny_lm_dir, path).items():
            expected[module] = expected.get(module, 0) + weights[name] * delta
    got = delta_weights(tiny_lm_dir, merged)
    assert got.keys() == expected.keys() and len(got) == 4
    for module in expected:
        assert torch.allclose(got[module], expected[module], atol=1e-5), module

    # And the merged policy's weights are base + the weighted sum.
    base = load_causal_lm(tiny_lm_dir).state_dict()
    model, _ = load_policy_model(merged)
    merged_weights = model.merge_and_unload().state_dict()
    key = "model.layers.0.self_attn.q_proj.weight"
    assert torch.allclose(merged_weights[key], base[key] + expected["model.layers.0.self_attn.q_proj"], atol=1e-5)


def test_full_rank_svd_is_exact_and_paper_linear_is_labelled(tiny_lm_dir, two_adapters, tmp_path):
    weights = {"dpo.empathy": 0.6, "dpo.safety": 0.4}
    svd = merge_adapters(MergeConfig(base_model=tiny_lm_dir, adapters=two_adapters, weights=weights,
                                     output_dir=tmp_path / "svd", method="svd", svd_rank=8))
    expected = {}
    for name, path in two_adapters.items():
        for module, delta in delta_weights(tiny_lm_dir, path).items():
            expected[module] = expected.get(module, 0) + weights[name] * delta
    got = delta_weights(tiny_lm_dir, svd)
    assert all(torch.allclose(got[m], expected[m], atol=1e-4) for m in expected)

    linear = merge_adapters(MergeConfig(base_model=tiny_lm_dir, adapters=two_adapters, weights=weights,
                                        output_dir=tmp_path / "linear", method="paper_linear"))
    metadata = json.loads((linear / "merge.json").read_text())
    assert metadata["paper_style"] and not metadata["exact"] and "approximation" in metadata["label"]
    approx = delta_weights(tiny_lm_dir, linear)
    assert not all(torch.allclose(approx[m], expected[m], atol=1e-4) for m in expected)


def test_merge_refuses_mismatched_inputs(tiny_lm_dir, two_adapters, tmp_path):
    with pytest.raises(ValueError, match="no weight"):
        merge_adapters(MergeConfig(base_model=tiny_lm_dir, adapters=two_adapters, weights={"dpo.empathy": 1.0},
                                   output_dir=tmp_path / "x"))
    other_seed = make_adapter(tiny_lm_dir, tmp_path / "seed5", seed=3, init_seed=5)
    with pytest.raises(ValueError, match="init seed"):
        merge_adapters(MergeConfig(base_model=tiny_lm_dir, adapters={"a": two_adapters["dpo.empathy"], "b": other_seed},
                                   weights={"a": 0.5, "b": 0.5}, output_dir=tmp_path / "y", method="paper_linear"))


def test_safe_adapter_names():
    assert safe_adapter_name("dpo.empathy-v2") == "dpo_empathy_v2"
    assert "." not in safe_adapter_name("1.x")
