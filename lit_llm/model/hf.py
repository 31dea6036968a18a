"""Hugging Face model directories <-> our GPT: config and weight mappings, read and write.

Two exact mappings (the same function, the same logits):
- GPT-2-exact mode (layernorm, learned positions, tanh GELU) <-> `GPT2LMHeadModel`. HF GPT-2 keeps its
  Linear layers as `Conv1D`, whose weight is stored (in, out): the transpose of nn.Linear's (out, in).
  A model without biases exports with zero biases, which computes the same.
- modern mode (rmsnorm, rope, swiglu) <-> `LlamaForCausalLM`. Our RoPE rotates (first half, second
  half) pairs of each head, as HF Llama's `rotate_half` does, with the same inverse frequencies, so q and
  k need no permutation (Meta's original Llama weights, which rotate interleaved pairs, would). The fused
  c_attn splits into q, k, v; c_gate/c_fc/c_proj are gate_proj/up_proj/down_proj; rms_norm_eps is ours.
Anything else (a mixed mode, grouped-query attention, rope scaling...) is refused with the reason.
A µP model (model/mup.py) exports with its attention scale and output multiplier folded into the weights
(`fold_into_weights`), so the HF model computes the same logits; it imports back as a standard one.

Reading needs only torch (pytorch_model.bin, loaded with weights_only=True) or `safetensors`; writing
needs `safetensors`. `transformers` itself is needed only to use the exported directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer

from lit_llm.data.tokenizer import EOS, PAD, UNK, gpt2_tokenizer
from lit_llm.errors import LitLLMError
from lit_llm.model.gpt import GPTConfig, resize_vocab_rows
from lit_llm.model.mup import fold_into_weights

GPT2_GELUS = ("gelu_new", "gelu_pytorch_tanh")  # both are the tanh approximation GPT-2 used
EXACT_GELU = "gelu"  # HF's name for the erf GELU (our mlp="gelu_exact", nanoGPT's)
NORM_EPS = 1e-5  # LanguageModel builds every norm with GPTConfig's default eps


def need_safetensors():
    try:
        import safetensors.torch
    except ImportError:
        raise LitLLMError("this needs the safetensors package: pip install 'lit-llm[hf]'") from None
    return safetensors.torch


# --- which HF architecture our config maps to ----------------------------------------------------
def hf_architecture(cfg: GPTConfig) -> str:
    """'gpt2' or 'llama', or an error that says why this config has no exact HF counterpart."""
    if (cfg.norm, cfg.pos) == ("layernorm", "learned") and cfg.mlp in ("gelu", "gelu_exact"):
        return "gpt2"
    if (cfg.norm, cfg.pos, cfg.mlp) == ("rmsnorm", "rope", "swiglu"):
        return "llama"
    raise LitLLMError(
        f"norm={cfg.norm}, pos={cfg.pos}, mlp={cfg.mlp} has no exact Hugging Face architecture: GPT-2 needs "
        "layernorm+learned+gelu (or gelu_exact), Llama needs rmsnorm+rope+swiglu"
    )


# --- configs ------------------------------------------------------------------------------------
def gpt2_config(cfg: GPTConfig, eos_id: int | None) -> dict:
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": cfg.vocab_size, "n_positions": cfg.block_size, "n_ctx": cfg.block_size,
        "n_embd": cfg.n_embd, "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_inner": cfg.n_ff,
        "activation_function": EXACT_GELU if cfg.mlp == "gelu_exact" else "gelu_new", "layer_norm_epsilon": cfg.norm_eps,
        "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
        "tie_word_embeddings": cfg.tie_embeddings, "bos_token_id": eos_id, "eos_token_id": eos_id,
        "initializer_range": 0.02, "use_cache": True,
    }


def llama_config(cfg: GPTConfig, eos_id: int | None) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": cfg.vocab_size, "max_position_embeddings": cfg.block_size,
        "hidden_size": cfg.n_embd, "intermediate_size": cfg.n_ff, "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head, "num_key_value_heads": cfg.n_head, "head_dim": cfg.head_size,
        "hidden_act": "silu", "rms_norm_eps": cfg.norm_eps,
        # transformers < 5 reads rope_theta, >= 5 rope_parameters (and converts rope_theta)
        "rope_theta": cfg.rope_theta, "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "attention_bias": cfg.bias, "mlp_bias": cfg.bias, "attention_dropout": cfg.dropout,
        "tie_word_embeddings": cfg.tie_embeddings, "bos_token_id": eos_id, "eos_token_id": eos_id,
        "pretraining_tp": 1, "initializer_range": 0.02, "use_cache": True,
    }


def config_from_hf(hf: dict, where: str) -> GPTConfig:
    """Our config for an HF GPT-2 or Llama config.json; anything that would change the function is refused."""
    kind = hf.get("model_type")

    def refuse(why: str):
        raise LitLLMError(f"{where}: {why}; lit_llm cannot reproduce this model exactly")

    if kind == "gpt2":
        act = hf.get("activation_function", "gelu_new")
        if act not in (*GPT2_GELUS, EXACT_GELU):
            refuse(f"activation_function {act!r} is neither GPT-2's tanh GELU nor the exact one")
        for key, ok in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                        ("reorder_and_upcast_attn", False), ("add_cross_attention", False)):
            if hf.get(key, ok) != ok:
                refuse(f"{key}={hf[key]}")
        eps, n_embd = hf.get("layer_norm_epsilon", 1e-5), hf.get("n_embd", 768)
        cfg = dict(vocab_size=hf.get("vocab_size", 50257), block_size=hf.get("n_positions", 1024),
                   n_layer=hf.get("n_layer", 12), n_head=hf.get("n_head", 12), n_embd=n_embd,
                   n_ff=hf.get("n_inner") or 4 * n_embd, norm="layernorm", pos="learned",
                   mlp="gelu_exact" if act == EXACT_GELU else "gelu", bias=True, tie_embeddings=hf.get("tie_word_embeddings", True))
    elif kind == "llama":
        heads = hf["num_attention_heads"]
        if hf.get("num_key_value_heads", heads) != heads:
            refuse(f"grouped-query attention ({hf['num_key_value_heads']} key/value heads for {heads})")
        if hf.get("hidden_act", "silu") != "silu":
            refuse(f"hidden_act {hf['hidden_act']!r} is not silu")
        if hf.get("head_dim") not in (None, hf["hidden_size"] // heads):
            refuse(f"head_dim {hf['head_dim']} is not hidden_size / num_attention_heads")
        rope = hf.get("rope_parameters") or {}
        if hf.get("rope_scaling") or rope.get("rope_type", "default") != "default":
            refuse("RoPE scaling is set")
        if hf.get("attention_bias", False) != hf.get("mlp_bias", False):
            refuse("attention_bias and mlp_bias differ")
        if hf.get("pretraining_tp", 1) != 1:
            refuse(f"pretraining_tp={hf['pretraining_tp']}")
        eps = hf.get("rms_norm_eps", 1e-6)
        cfg = dict(vocab_size=hf["vocab_size"], block_size=hf.get("max_position_embeddings", 2048),
                   n_layer=hf["num_hidden_layers"], n_head=heads, n_embd=hf["hidden_size"],
                   n_ff=hf["intermediate_size"], norm="rmsnorm", pos="rope", mlp="swiglu",
                   bias=hf.get("attention_bias", False), tie_embeddings=hf.get("tie_word_embeddings", False),
                   rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))))
    else:
        raise LitLLMError(f"{where}: model_type {kind!r} is not supported (gpt2 or llama)")
    if abs(eps - NORM_EPS) > 1e-12:
        refuse(f"the norm epsilon is {eps}, lit_llm's is {NORM_EPS}")
    try:
        return GPTConfig(**cfg)
    except ValueError as err:
        raise LitLLMError(f"{where}: {err}") from None


# --- weights: our keys are GPT's own state_dict keys (wte.weight, h.0.attn.c_attn.weight, ...) -------
def to_gpt2_weights(sd: dict[str, torch.Tensor], cfg: GPTConfig) -> dict[str, torch.Tensor]:
    out = {"transformer.wte.weight": sd["wte.weight"], "transformer.wpe.weight": sd["wpe.weight"]}

    def norm(ours: str, theirs: str) -> None:
        out[f"{theirs}.weight"] = sd[f"{ours}.weight"]
        out[f"{theirs}.bias"] = sd.get(f"{ours}.bias", torch.zeros_like(sd[f"{ours}.weight"]))

    def conv1d(ours: str, theirs: str) -> None:
        w = sd[f"{ours}.weight"]
        out[f"{theirs}.weight"] = w.t()  # Conv1D stores (in, out)
        out[f"{theirs}.bias"] = sd.get(f"{ours}.bias", w.new_zeros(w.size(0)))

    for i in range(cfg.n_layer):
        o, t = f"h.{i}", f"transformer.h.{i}"
        norm(f"{o}.ln_1", f"{t}.ln_1")
        norm(f"{o}.ln_2", f"{t}.ln_2")
        for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            conv1d(f"{o}.{name}", f"{t}.{name}")
    norm("ln_f", "transformer.ln_f")
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"]
    return out


def from_gpt2_weights(hf: dict[str, torch.Tensor], cfg: GPTConfig) -> dict[str, torch.Tensor]:
    # GPT2LMHeadModel saves "transformer.h.0...", a bare GPT2Model (the original hub files) "h.0..."
    hf = {k.removeprefix("transformer."): v for k, v in hf.items()}
    sd = {"wte.weight": hf["wte.weight"], "wpe.weight": hf["wpe.weight"]}
    for i in range(cfg.n_layer):
        p = f"h.{i}"
        for name in ("ln_1", "ln_2"):
            sd[f"{p}.{name}.weight"], sd[f"{p}.{name}.bias"] = hf[f"{p}.{name}.weight"], hf[f"{p}.{name}.bias"]
        for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            sd[f"{p}.{name}.weight"] = hf[f"{p}.{name}.weight"].t()
            sd[f"{p}.{name}.bias"] = hf[f"{p}.{name}.bias"]
    sd["ln_f.weight"], sd["ln_f.bias"] = hf["ln_f.weight"], hf["ln_f.bias"]
    sd["lm_head.weight"] = sd["wte.weight"] if cfg.tie_embeddings else hf["lm_head.weight"]
    return sd


LLAMA_MLP = {"c_gate": "gate_proj", "c_fc": "up_proj", "c_proj": "down_proj"}


def to_llama_weights(sd: dict[str, torch.Tensor], cfg: GPTConfig) -> dict[str, torch.Tensor]:
    out = {"model.embed_tokens.weight": sd["wte.weight"], "model.norm.weight": sd["ln_f.weight"]}
    C = cfg.n_embd
    for i in range(cfg.n_layer):
        o, t = f"h.{i}", f"model.layers.{i}"
        out[f"{t}.input_layernorm.weight"] = sd[f"{o}.ln_1.weight"]
        out[f"{t}.post_attention_layernorm.weight"] = sd[f"{o}.ln_2.weight"]
        for suffix in ("weight", "bias") if cfg.bias else ("weight",):
            qkv = sd[f"{o}.attn.c_attn.{suffix}"]  # (3C, C): q rows, then k, then v
            for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
                out[f"{t}.self_attn.{name}.{suffix}"] = qkv[j * C : (j + 1) * C]
            out[f"{t}.self_attn.o_proj.{suffix}"] = sd[f"{o}.attn.c_proj.{suffix}"]
            for ours, theirs in LLAMA_MLP.items():
                out[f"{t}.mlp.{theirs}.{suffix}"] = sd[f"{o}.mlp.{ours}.{suffix}"]
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"]
    return out


def from_llama_weights(hf: dict[str, torch.Tensor], cfg: GPTConfig) -> dict[str, torch.Tensor]:
    sd = {"wte.weight": hf["model.embed_tokens.weight"], "ln_f.weight": hf["model.norm.weight"]}
    for i in range(cfg.n_layer):
        o, t = f"h.{i}", f"model.layers.{i}"
        sd[f"{o}.ln_1.weight"] = hf[f"{t}.input_layernorm.weight"]
        sd[f"{o}.ln_2.weight"] = hf[f"{t}.post_attention_layernorm.weight"]
        for suffix in ("weight", "bias") if cfg.bias else ("weight",):
            sd[f"{o}.attn.c_attn.{suffix}"] = torch.cat(
                [hf[f"{t}.self_attn.{name}.{suffix}"] for name in ("q_proj", "k_proj", "v_proj")])
            sd[f"{o}.attn.c_proj.{suffix}"] = hf[f"{t}.self_attn.o_proj.{suffix}"]
            for ours, theirs in LLAMA_MLP.items():
                sd[f"{o}.mlp.{ours}.{suffix}"] = hf[f"{t}.mlp.{theirs}.{suffix}"]
    sd["lm_head.weight"] = sd["wte.weight"] if cfg.tie_embeddings else hf["lm_head.weight"]
    return sd


# --- directories --------------------------------------------------------------------------------
def is_hf_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def read_hf_config(directory: Path) -> GPTConfig:
    try:
        hf = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise LitLLMError(f"cannot read {directory / 'config.json'}: {err}") from None
    return config_from_hf(hf, str(directory))


def read_hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    """The raw HF state dict: model.safetensors (or its sharded index) or pytorch_model.bin (tensors only)."""
    if (directory / "model.safetensors").is_file():
        return need_safetensors().load_file(str(directory / "model.safetensors"))
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        load_file = need_safetensors().load_file
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {k: v for shard in shards for k, v in load_file(str(directory / shard)).items()}
    if (directory / "pytorch_model.bin").is_file():
        try:  # weights_only: a .bin is a pickle, and nothing but tensors may come out of it
            return torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
        except Exception as err:
            raise LitLLMError(f"cannot read {directory / 'pytorch_model.bin'} as plain tensors "
                              f"({err.__class__.__name__})") from None
    raise LitLLMError(f"{directory} holds no model.safetensors or pytorch_model.bin")


def read_hf_model(directory: Path) -> tuple[GPTConfig, dict[str, torch.Tensor]]:
    cfg = read_hf_config(directory)
    raw = read_hf_weights(directory)
    convert = from_gpt2_weights if cfg.norm == "layernorm" else from_llama_weights
    try:
        sd = convert(raw, cfg)
    except KeyError as err:
        raise LitLLMError(f"{directory}: weight {err.args[0]} is missing for a {hf_architecture(cfg)} model") from None
    return cfg, {k: v.float().contiguous() for k, v in sd.items()}


def read_hf_tokenizer(directory: Path) -> str | None:
    """tokenizer.json, or GPT-2's vocab.json + merges.txt, as tokenizer.json text; None when absent."""
    if (directory / "tokenizer.json").is_file():
        return (directory / "tokenizer.json").read_text()
    if (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
        return gpt2_tokenizer(directory).to_str()
    return None


def tokenizer_config(tokenizer_json: str, block_size: int) -> dict:
    """tokenizer_config.json for transformers' PreTrainedTokenizerFast over our tokenizer.json."""
    vocab = Tokenizer.from_str(tokenizer_json).get_vocab(with_added_tokens=True)
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": block_size,
              "clean_up_tokenization_spaces": False}  # HF's cleanup would change our decoded text
    for key, token in (("eos_token", EOS), ("bos_token", EOS), ("pad_token", PAD), ("unk_token", UNK)):
        if token in vocab:
            config[key] = token
    return config


def write_hf_dir(out: Path, cfg: GPTConfig, sd: dict[str, torch.Tensor], tokenizer_json: str | None) -> str:
    """Write config.json, model.safetensors and (with a tokenizer) tokenizer.json + tokenizer_config.json
    into the new directory out; returns the architecture name."""
    save_file = need_safetensors().save_file
    arch = hf_architecture(cfg)
    sd = fold_into_weights(dict(sd), cfg)  # µP's attention scale and output multiplier (model/mup.py)
    resize_vocab_rows(sd, cfg.vocab_size)  # exactly vocab_size rows, whatever our padding
    eos_id = None
    if tokenizer_json is not None:
        eos_id = Tokenizer.from_str(tokenizer_json).token_to_id(EOS)
    config = gpt2_config(cfg, eos_id) if arch == "gpt2" else llama_config(cfg, eos_id)
    weights = (to_gpt2_weights if arch == "gpt2" else to_llama_weights)(sd, cfg)
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file({k: v.detach().float().contiguous() for k, v in weights.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    if tokenizer_json is not None:
        (out / "tokenizer.json").write_text(tokenizer_json)
        (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(tokenizer_json, cfg.block_size),
                                                              indent=2) + "\n")
    return arch
