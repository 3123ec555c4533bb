"""training.pipeline.lora_gguf: a PEFT LoRA adapter written as a llama.cpp LoRA GGUF for the
packaged SmolLM2 base, read back with gguf's own reader: the keys llama.cpp checks, the tensors'
names and shapes, q/k's B in llama.cpp's row order (the Hugging Face loader's inverse gives it
back), and adapters llama.cpp would apply differently refused with a message. Served by a real
llama.cpp server in test_llama_server.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.pipeline.io import PipelineConfigError
from training.pipeline.lora_gguf import lora_adapter_to_gguf
from training.pipeline.models import packaged_model_file

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, RANK = 576, 9, 3, 64, 4  # SmolLM2-135M
ROOT_CONFIGS = Path(__file__).resolve().parents[3] / "training" / "pipeline" / "configs"


def write_adapter(folder, modules=(("0", "q_proj", HIDDEN), ("0", "k_proj", KV_HEADS * HEAD_DIM), ("1", "v_proj", KV_HEADS * HEAD_DIM)),
                  **config):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    tensors = {}
    for layer, name, rows in modules:
        key = f"base_model.model.model.layers.{layer}.self_attn.{name}"
        tensors[f"{key}.lora_A.weight"] = rng.standard_normal((RANK, HIDDEN)).astype(np.float32)
        tensors[f"{key}.lora_B.weight"] = rng.standard_normal((rows, RANK)).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": RANK, "lora_alpha": 8, **config}))
    return tensors


def hf_order(rows, n_head):
    """transformers' reading of a GGUF's q/k rows (its _reverse_permute_weights), to undo the conversion's."""
    return rows.reshape(n_head, rows.shape[0] // n_head // 2, 2, *rows.shape[1:]).swapaxes(2, 1).reshape(rows.shape)


def test_an_adapter_becomes_a_llama_cpp_lora_gguf(tmp_path):
    import gguf

    tensors = write_adapter(tmp_path / "adapter")
    result = lora_adapter_to_gguf(tmp_path / "adapter", packaged_model_file("smollm2-135m-instruct"), tmp_path / "lora.gguf")
    assert (result.architecture, result.rank, result.alpha, result.tensors) == ("llama", RANK, 8.0, 6)
    reader = gguf.GGUFReader(str(result.path))
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    alpha = reader.fields["adapter.lora.alpha"]
    assert alpha.types == [gguf.GGUFValueType.FLOAT32] and alpha.contents() == 8.0  # llama.cpp aborts on another type
    assert reader.fields["general.architecture"].contents() == "llama"
    read = {t.name: np.array(t.data).reshape(list(reversed(t.shape.tolist()))) for t in reader.tensors}
    assert set(read) == {f"blk.{layer}.{name}.weight.{part}" for layer, name in (("0", "attn_q"), ("0", "attn_k"), ("1", "attn_v"))
                         for part in ("lora_a", "lora_b")}
    source = "base_model.model.model.layers.{}.self_attn.{}.lora_{}.weight"
    for layer, hf, name, heads in (("0", "q_proj", "attn_q", HEADS), ("0", "k_proj", "attn_k", KV_HEADS), ("1", "v_proj", "attn_v", None)):
        a, b = tensors[source.format(layer, hf, "A")], tensors[source.format(layer, hf, "B")]
        np.testing.assert_array_equal(read[f"blk.{layer}.{name}.weight.lora_a"], a)  # rank x in, as llama.cpp wants
        stored_b = read[f"blk.{layer}.{name}.weight.lora_b"]
        assert stored_b.shape == b.shape  # out x rank
        if heads is None:
            np.testing.assert_array_equal(stored_b, b)  # v is not permuted
        else:
            assert not np.array_equal(stored_b, b)  # in llama.cpp's row order ...
            np.testing.assert_array_equal(hf_order(stored_b, heads), b)  # ... which the HF loader's order undoes


@pytest.mark.parametrize("config, message", [
    ({"use_rslora": True}, "rsLoRA"),
    ({"use_dora": True}, "DoRA"),
    ({"modules_to_save": ["score"]}, "modules_to_save"),
])
def test_adapters_llama_cpp_would_apply_differently_are_refused(tmp_path, config, message):
    write_adapter(tmp_path / "adapter", **config)
    with pytest.raises(PipelineConfigError, match=message):
        lora_adapter_to_gguf(tmp_path / "adapter", packaged_model_file("smollm2-135m-instruct"), tmp_path / "lora.gguf")
    assert not (tmp_path / "lora.gguf").exists()


def test_a_module_the_base_does_not_have_is_refused_by_name(tmp_path):
    write_adapter(tmp_path / "adapter", modules=(("99", "q_proj", HIDDEN),))  # SmolLM2-135M has 30 layers
    with pytest.raises(PipelineConfigError, match=r"no weight for the adapted module model\.layers\.99\.self_attn\.q_proj"):
        lora_adapter_to_gguf(tmp_path / "adapter", packaged_model_file("smollm2-135m-instruct"), tmp_path / "lora.gguf")


def test_the_lora_gguf_stage_from_the_command_line(tmp_path, capsys):
    from training.pipeline.__main__ import main

    write_adapter(tmp_path / "adapter")
    config = tmp_path / "lora_gguf.toml"
    config.write_text(f"adapter_dir = '{tmp_path / 'adapter'}'\nbase_model = 'smollm2-135m-instruct'\n"
                      f"output_path = '{tmp_path / 'out' / 'policy.gguf'}'\n")
    assert main(["lora-gguf", "--config", str(config)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["stage"] == "lora-gguf" and printed["result"]["tensors"] == 6
    assert (tmp_path / "out" / "policy.gguf").stat().st_size > 0
    assert main(["lora-gguf", "--config", str(ROOT_CONFIGS / "lora_gguf.toml"), "--check"]) == 0  # the example is valid


def test_q_and_k_adapters_are_refused_for_an_architecture_whose_row_order_is_not_known(tmp_path, monkeypatch):
    import training.pipeline.lora_gguf as lora_gguf

    monkeypatch.setattr(lora_gguf, "ROTARY_PERMUTED", {"mistral"})  # as if the base were not a known Llama-family GGUF
    write_adapter(tmp_path / "adapter")
    with pytest.raises(PipelineConfigError, match=r"q/k row order only for mistral"):
        lora_adapter_to_gguf(tmp_path / "adapter", packaged_model_file("smollm2-135m-instruct"), tmp_path / "lora.gguf")
    write_adapter(tmp_path / "v_only", modules=(("1", "v_proj", KV_HEADS * HEAD_DIM),))
    assert lora_adapter_to_gguf(tmp_path / "v_only", packaged_model_file("smollm2-135m-instruct"), tmp_path / "v.gguf").tensors == 2


def test_wrong_paths_and_files_are_refused_with_a_message(tmp_path, capsys):
    from training.pipeline.__main__ import main

    base = packaged_model_file("smollm2-135m-instruct")
    with pytest.raises(PipelineConfigError, match="not a PEFT adapter folder"):
        lora_adapter_to_gguf(tmp_path / "nothing", base, tmp_path / "out.gguf")
    write_adapter(tmp_path / "adapter")
    (tmp_path / "adapter" / "adapter_config.json").write_bytes(b"\xff{not json")
    with pytest.raises(PipelineConfigError, match="not readable JSON"):
        lora_adapter_to_gguf(tmp_path / "adapter", base, tmp_path / "out.gguf")
    write_adapter(tmp_path / "adapter")
    (tmp_path / "fake.gguf").write_bytes(b"this is not a gguf file")
    with pytest.raises(PipelineConfigError, match="not a readable GGUF model file"):
        lora_adapter_to_gguf(tmp_path / "adapter", tmp_path / "fake.gguf", tmp_path / "out.gguf")
    config = tmp_path / "lora.toml"
    config.write_text(f"adapter_dir = '{tmp_path / 'adapter'}'\nbase_model = 'no-such-model'\noutput_path = '{tmp_path / 'o.gguf'}'\n")
    assert main(["lora-gguf", "--config", str(config)]) == 2  # a message, not a traceback
    assert "neither a GGUF file nor a packaged model" in capsys.readouterr().err
    assert not (tmp_path / "out.gguf").exists() and not (tmp_path / "o.gguf").exists()
