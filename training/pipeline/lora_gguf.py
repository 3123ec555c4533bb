"""A trained LoRA policy as a llama.cpp LoRA adapter (GGUF), so that llama.cpp's OpenAI-compatible
server serves it by name on top of the base model's GGUF (``--lora``; in llama_cpp.server, a
model entry's ``lora_path``: ``llama_server.ServedModel``). Plain Python: the PEFT adapter folder
and the base GGUF in, one GGUF file out.

What llama.cpp's reader wants (src/llama-adapter.cpp): ``general.type = adapter``,
``adapter.type = lora``, ``adapter.lora.alpha`` as a float32 (it scales by alpha / rank, as PEFT
does), the base's ``general.architecture``, and for each adapted weight ``<its GGUF name>.lora_a``
(rank x in) and ``<its GGUF name>.lora_b`` (out x rank). A Llama-family base's GGUF holds q_proj and
k_proj with their rows permuted for llama.cpp's rotary layout (the Hugging Face loader undoes that
when it reads the GGUF), so B of those two gets the same permutation: permuting the rows of
W + s·B·A is permuting the rows of W and of B.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .control import RunControl, run_control
from .io import PipelineConfigError

PEFT_PREFIX = "base_model.model."
# Architectures whose q/k row order in the GGUF is known here: llama.cpp writes Llama-family models
# (Llama, Mistral, SmolLM2) as "llama" with q/k rows permuted. For another architecture an adapter on
# q_proj or k_proj is refused rather than written in a row order that may be wrong (v, o and MLP are
# never reordered).
ROTARY_PERMUTED = {"llama"}


@dataclass
class LoraGGUFConfig:
    """``python -m training.pipeline lora-gguf``: one trained adapter to one llama.cpp LoRA file."""

    adapter_dir: str  # a PEFT LoRA adapter (adapter_config.json, adapter_model.safetensors): a policy's adapter/
    base_model: str  # the base it was trained on, as the server loads it: a packaged model's name or a GGUF path
    output_path: str  # the .gguf to write; serve it with the base (llama.cpp --lora, llama_cpp.server lora_path)


@dataclass
class LoraGGUFResult:
    path: Path
    architecture: str
    rank: int
    alpha: float
    tensors: int  # lora_a and lora_b, counted apart


def _field(reader, key: str):
    field = reader.fields.get(key)
    if field is None:
        raise PipelineConfigError(f"the base GGUF has no {key!r}: is it a model file?")
    return field.contents()


def _permuted_rows(matrix, n_head: int):
    """llama.cpp's q/k row order for rotary embeddings, applied to a (rows x rank) matrix."""
    rows = matrix.shape[0]
    return matrix.reshape(n_head, 2, rows // n_head // 2, *matrix.shape[1:]).swapaxes(1, 2).reshape(matrix.shape)


def lora_adapter_to_gguf(adapter_dir: str | Path, base_gguf: str | Path, output_path: str | Path) -> LoraGGUFResult:
    """Write the PEFT LoRA adapter in ``adapter_dir`` (trained on the model of ``base_gguf``) as a
    llama.cpp LoRA GGUF at ``output_path``. Refused with a PipelineConfigError naming the reason:
    adapters llama.cpp would apply differently (rsLoRA, DoRA, fan_in_fan_out, extra trained modules)
    or whose weights the base does not have."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    adapter_dir, output_path = Path(adapter_dir), Path(output_path)
    missing = [name for name in ("adapter_config.json", "adapter_model.safetensors") if not (adapter_dir / name).is_file()]
    if missing:
        raise PipelineConfigError(f"{adapter_dir}: not a PEFT adapter folder (no {' or '.join(missing)})")
    try:
        config = json.loads((adapter_dir / "adapter_config.json").read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PipelineConfigError(f"{adapter_dir}/adapter_config.json is not readable JSON ({exc})") from None
    for flag, what in (("use_rslora", "rsLoRA scales by alpha / sqrt(rank)"), ("use_dora", "DoRA"),
                       ("fan_in_fan_out", "fan_in_fan_out weights")):
        if config.get(flag):
            raise PipelineConfigError(f"{adapter_dir}: {what} is not a plain LoRA adapter llama.cpp applies the same way")
    if config.get("modules_to_save"):
        raise PipelineConfigError(f"{adapter_dir}: modules_to_save ({config['modules_to_save']}) are full weights, not LoRA")
    rank, alpha = int(config["r"]), float(config["lora_alpha"])

    try:
        reader = gguf.GGUFReader(str(base_gguf))
    except (OSError, ValueError) as exc:
        raise PipelineConfigError(f"{base_gguf} is not a readable GGUF model file ({exc})") from None
    architecture = _field(reader, "general.architecture")
    arch = {name: arch for arch, name in gguf.MODEL_ARCH_NAMES.items()}.get(architecture)
    if arch is None:
        raise PipelineConfigError(f"the base GGUF's architecture {architecture!r} is not one the gguf package knows")
    n_head = int(_field(reader, f"{architecture}.attention.head_count"))
    n_head_kv = int(_field(reader, f"{architecture}.attention.head_count_kv"))
    names = gguf.get_tensor_name_map(arch, int(_field(reader, f"{architecture}.block_count")))
    base_tensors = {tensor.name for tensor in reader.tensors}

    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    writer = gguf.GGUFWriter(str(output_path), architecture)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    count = 0
    for key in sorted(k for k in weights if k.endswith(".lora_A.weight")):
        module = key[len(PEFT_PREFIX):] if key.startswith(PEFT_PREFIX) else key
        module = module[: -len(".lora_A.weight")]
        b_key = key.replace(".lora_A.weight", ".lora_B.weight")
        if b_key not in weights:
            raise PipelineConfigError(f"{adapter_dir}: {key} has no lora_B beside it")
        name = names.get_name(f"{module}.weight", try_suffixes=(".weight",))
        if name is None or name not in base_tensors:
            raise PipelineConfigError(f"{adapter_dir}: the base GGUF has no weight for the adapted module {module}")
        lora_a = weights[key].astype(np.float32)
        lora_b = weights[b_key].astype(np.float32)
        if module.endswith(("q_proj", "k_proj")):
            if architecture not in ROTARY_PERMUTED:
                raise PipelineConfigError(f"{adapter_dir}: an adapter on {module} for a {architecture!r} base: this converter knows "
                                          f"llama.cpp's q/k row order only for {', '.join(sorted(ROTARY_PERMUTED))}; "
                                          "train the adapter without q_proj/k_proj, or convert it with llama.cpp's own tool")
            lora_b = _permuted_rows(lora_b, n_head if module.endswith("q_proj") else n_head_kv)
        writer.add_tensor(f"{name}.lora_a", np.ascontiguousarray(lora_a))
        writer.add_tensor(f"{name}.lora_b", np.ascontiguousarray(lora_b))
        count += 2
    if not count:
        raise PipelineConfigError(f"{adapter_dir}: no LoRA weights in adapter_model.safetensors")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return LoraGGUFResult(path=output_path, architecture=architecture, rank=rank, alpha=alpha, tensors=count)


def convert_lora_to_gguf(config: LoraGGUFConfig, control: RunControl | None = None) -> LoraGGUFResult:
    """The ``lora-gguf`` stage: ``lora_adapter_to_gguf`` with the base named as the config allows."""
    from .models import packaged_model_file

    from .models import ModelNotFoundError

    base = Path(config.base_model)
    if not base.is_file():
        try:
            base = packaged_model_file(config.base_model)
        except ModelNotFoundError as exc:
            raise PipelineConfigError(f"base_model {config.base_model!r} is neither a GGUF file nor a packaged model ({exc})") from None
    result = lora_adapter_to_gguf(config.adapter_dir, base, config.output_path)
    run_control(control).log(f"wrote {result.path}: {result.tensors} LoRA tensors, rank {result.rank}, alpha {result.alpha:g}, "
                             f"for the {result.architecture} base {base.name}")
    return result
