"""Dynamic int8 quantization for CPU inference: every Linear gets int8 weights, activations are quantized
per batch at run time (torch.ao.quantization.quantize_dynamic)."""

from __future__ import annotations

import copy
import io
import warnings

import torch
import torch.nn as nn

from lit_llm.errors import LitLLMError


def plain_linears(model: nn.Module) -> nn.Module:
    """Replace subclasses of nn.Linear (lit_llm's Linear) by nn.Linear sharing their parameters:
    quantize_dynamic only converts exact nn.Linear modules."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear) and type(child) is not nn.Linear:
                linear = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None,
                                   device="meta")
                linear.weight, linear.bias = child.weight, child.bias
                setattr(parent, name, linear)
    return model


def quantize_int8(model: nn.Module) -> nn.Module:
    """A CPU copy of model with every Linear dynamically quantized to int8 (embeddings and norms stay fp32;
    a tied output head becomes an int8 copy of the embedding)."""
    model = plain_linears(copy.deepcopy(model).cpu().float().eval())
    engines = torch.backends.quantized.supported_engines
    if not any(e in engines for e in ("x86", "fbgemm", "qnnpack")):
        raise LitLLMError(f"this PyTorch build has no int8 CPU engine (supported: {engines})")
    with warnings.catch_warnings():  # torch.ao's quantized tensors are deprecated in favour of torchao
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def state_dict_mb(model: nn.Module) -> float:
    """Size of the serialized state dict in MB (10^6 bytes); shared (tied) tensors are counted once."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell() / 1e6
