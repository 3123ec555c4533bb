"""Stage 6: policies (SFT, DPO, MODPO, safety-constrained MODPO, joint-loss DPO) and adapter merging."""
from .common import PolicyConfig, PolicyResult, build_lora_config, prompt_messages

__all__ = ["PolicyConfig", "PolicyResult", "build_lora_config", "prompt_messages"]
