"""Training objectives: what a batch's inputs and targets are, and how a split is scored.

- CausalLM: next-token prediction (inputs tokens[:-1], targets tokens[1:]).
- MaskedLM: BERT's masked LM (Devlin et al. 2018), with bidirectional attention.

Each valid position is selected with probability mask_prob (15%); a selected token becomes MASK with
probability 0.8, a uniformly random token id with 0.1, and stays unchanged with 0.1. The loss is the
cross-entropy at selected positions only: the targets hold the original token there and IGNORE_INDEX
everywhere else. All draws come from a torch.Generator, so a seed fixes the corruption exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from tokenizers import Tokenizer

from lit_llm.data.samplers import IGNORE_INDEX
from lit_llm.data.tokenizer import MASK
from lit_llm.errors import LitLLMError

MASK_FRACTION, RANDOM_FRACTION = 0.8, 0.1  # of the selected positions; the rest stay unchanged


def mask_tokens(
    tokens: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    generator: torch.Generator,
    mask_prob: float = 0.15,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens (B, T) -> (inputs, targets), both (B, T). valid (B, T) bool limits the selection (e.g. not
    padding). Random replacements are drawn uniformly from [0, vocab_size)."""
    device = tokens.device
    selected = torch.rand(tokens.shape, generator=generator, device=device) < mask_prob
    if valid is not None:
        selected &= valid
    action = torch.rand(tokens.shape, generator=generator, device=device)
    random_ids = torch.randint(vocab_size, tokens.shape, generator=generator, device=device)
    inputs = torch.where(selected & (action < MASK_FRACTION), torch.full_like(tokens, mask_id), tokens)
    replace = selected & (action >= MASK_FRACTION) & (action < MASK_FRACTION + RANDOM_FRACTION)
    inputs = torch.where(replace, random_ids, inputs)
    targets = torch.where(selected, tokens, torch.full_like(tokens, IGNORE_INDEX))
    return inputs, targets


def seeded_generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed % 2**63)


def masked_lm_scores(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed NLL, number of scored (selected) positions and correct argmax predictions among them."""
    nll_sum, scored = token_nll(logits, targets)
    correct = ((logits.argmax(dim=-1) == targets) & (targets != IGNORE_INDEX)).sum()
    return nll_sum, scored, correct


LOSS_CHUNK_ROWS = 4096  # positions per fp32 chunk of the loss: 4096 x 50257 fp32 is 0.8 GB


def chunk_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX, reduction="sum")


def token_nll(logits: torch.Tensor, targets: torch.Tensor, chunk_rows: int = LOSS_CHUNK_ROWS,
              chunk_fn=chunk_nll) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy over the positions whose target is not IGNORE_INDEX, and their number.

    The softmax runs in fp32 whatever the logits' dtype. Logits in fp32 that fit one chunk go straight to
    F.cross_entropy. Otherwise the rows go through in chunks, each upcast inside an activation checkpoint,
    so at most one chunk's fp32 copy (and its softmax) exists at a time, in forward and in backward; under
    bf16 autocast at GPT-2 small (16 x 1024 x 50257) that saves the 3.3 GB fp32 copy of the whole logits.
    chunk_fn: chunk_nll, or `torch.compile(chunk_nll)`, which fuses upcast, softmax and gather into one pass
    over the chunk (eager, each is a pass over its fp32 copy: on an H200 ~14% of a GPT-2 small step)."""
    flat, flat_targets = logits.flatten(0, 1), targets.flatten()
    n_tokens = (targets != IGNORE_INDEX).sum()
    if flat.dtype == torch.float32 and flat.size(0) <= chunk_rows:
        return chunk_fn(flat, flat_targets), n_tokens
    chunks = zip(flat.split(chunk_rows), flat_targets.split(chunk_rows))
    if not torch.is_grad_enabled():
        return sum(chunk_fn(x, t) for x, t in chunks), n_tokens
    nll_sum = sum(torch.utils.checkpoint.checkpoint(chunk_fn, x, t, use_reentrant=False) for x, t in chunks)
    return nll_sum, n_tokens


class CausalLM:
    causal = True

    def bind(self, tokenizer: Tokenizer) -> None:
        pass

    def training_pair(self, batch: dict, micro_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = batch["tokens"]
        return tokens[:, :-1], batch.get("targets", tokens[:, 1:])

    def score(self, model, batch: dict, batch_idx: int, rank: int) -> tuple[torch.Tensor, torch.Tensor, None]:
        """Summed NLL and scored positions of an evaluation batch (no accuracy)."""
        return (*token_nll(model(batch["input"]), batch["target"]), None)


class MaskedLM(CausalLM):
    causal = False

    def __init__(self, mask_prob: float, seed: int, vocab_size: int) -> None:
        if not 0 < mask_prob <= 1:
            raise LitLLMError(f"--model.mask_prob must be in (0, 1], got {mask_prob}")
        self.mask_prob, self.seed, self.vocab_size = mask_prob, seed, vocab_size
        self.mask_id: int | None = None

    def bind(self, tokenizer: Tokenizer) -> None:
        self.mask_id = tokenizer.token_to_id(MASK)
        if self.mask_id is None:
            raise LitLLMError(f"--model.objective masked needs a tokenizer with a {MASK} token: use "
                              "--data.tokenizer char or bpe (gpt2 has none)")

    def corrupt(self, tokens: torch.Tensor, index: int, valid: torch.Tensor | None = None):
        """The masked inputs and targets of tokens, fixed by the seed and index (resumable)."""
        if self.mask_id is None:
            raise LitLLMError("the masked objective has no tokenizer bound (no <mask> id)")
        generator = seeded_generator(self.seed * 1_000_003 + index, tokens.device)
        return mask_tokens(tokens, self.mask_id, self.vocab_size, generator, self.mask_prob, valid)

    def training_pair(self, batch: dict, micro_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.corrupt(batch["tokens"][:, :-1], micro_batch)

    def score(self, model, batch: dict, batch_idx: int, rank: int):
        """The same masks at every evaluation (seeded by the batch), scored at the selected positions;
        the padded tail of a short last window is never selected. Returns (NLL sum, scored, correct)."""
        valid = batch["target"] != IGNORE_INDEX
        inputs, targets = self.corrupt(batch["input"], -(1 + batch_idx * 1024 + rank), valid)
        return masked_lm_scores(model(inputs), targets)
