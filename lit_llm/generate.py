"""Text generation from a checkpoint alone: it carries the model's hyper-parameters and the tokenizer."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer

from lit_llm.data.tokenizer import EOS, MASK, PAD, UNK
from lit_llm.errors import LitLLMError
from lit_llm.model import GPT


def load_checkpoint(path: str | Path, map_location: str = "cpu"):
    """LanguageModel and tokenizer from a lit_llm checkpoint; loads plain tensors and types only."""
    from lit_llm.module import LanguageModel

    path = Path(path)
    if not path.is_file():
        raise LitLLMError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise LitLLMError(f"cannot read checkpoint {path} ({err.__class__.__name__}); is it truncated?") from None
    if "hyper_parameters" not in ckpt or "lit_llm" not in ckpt:
        raise LitLLMError(f"{path} is not a lit_llm checkpoint (no hyper_parameters / lit_llm entries)")
    hparams = {k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_")}
    model = LanguageModel(**hparams)
    model.configure_model()
    model.load_state_dict(ckpt["state_dict"])
    model.on_load_checkpoint(ckpt)
    model.eval()
    return model, model.tokenizer()


def encode_prompt(tokenizer: Tokenizer, prompt: str) -> list[int]:
    if not prompt:
        raise LitLLMError(f"the prompt is empty; give some text (or {EOS!r} for unconditional samples)")
    enc = tokenizer.encode(prompt)
    unk = tokenizer.token_to_id(UNK)
    if unk is not None and unk in enc.ids:
        missing = sorted({prompt[s:e] for i, (s, e) in zip(enc.ids, enc.offsets) if i == unk})
        raise LitLLMError(f"the prompt has characters the tokenizer does not know: {''.join(missing)!r}")
    return enc.ids


def generate_text(
    model: GPT,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 200,
    top_p: float | None = None,
    num_samples: int = 1,
    seed: int = 1337,
) -> list[str]:
    """num_samples completions of prompt (the prompt included), decoded."""
    if not model.config.causal:
        raise LitLLMError("this checkpoint is a masked LM (bidirectional attention): it cannot generate text")
    device = next(model.parameters()).device
    ids = torch.tensor([encode_prompt(tokenizer, prompt)] * num_samples, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    never = [i for i in map(tokenizer.token_to_id, (PAD, MASK, UNK)) if i is not None]
    out = model.generate(ids, max_new_tokens, temperature, top_k, top_p, generator=generator, suppress_ids=never)
    model.train(was_training)
    return [tokenizer.decode(row.tolist(), skip_special_tokens=False) for row in out]
