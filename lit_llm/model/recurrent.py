"""A recurrent language model (LSTM or GRU), the baseline the Transformer replaced, in plain PyTorch.

token embedding (wte) -> dropout -> nn.LSTM / nn.GRU (n_layer layers of width n_embd, batch_first,
dropout between layers) -> dropout -> final norm -> head tied to wte (`GPTConfig.tie_embeddings`).

It shares the GPT's config, vocabulary padding, init of the embedding and head, and its interface:
`forward(idx)` returns logits (B, T, vocab_size), `hidden_states`, `num_params`, `flops_per_token` and
`generate`, so the same LanguageModel, checkpoints, generation, throughput and scaling code serve both.
What differs:
- no positions: the recurrence carries order; n_head, pos, mlp, n_ff and rope_theta are unused.
- `generate` feeds the prompt once and then one token at a time, carrying the hidden state (the context
  never slides; the state summarises all of it). use_cache=False re-reads the whole text each step.
- FLOPs per token are 6 x the parameters used in matmuls (2 forward, 4 backward per weight: the input
  and recurrent gate weights of every layer, the head): one step of the recurrence costs the same at any
  position, so there is no context-length term (the GPT's attention term). Gate nonlinearities and
  elementwise products (~10 n_embd per layer and token) are not counted.
The recurrent weights keep PyTorch's init, U(-1/sqrt(n_embd), 1/sqrt(n_embd)).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from lit_llm.model.gpt import Embedding, GPTConfig, Linear, make_norm, resize_vocab_rows, sample_next

State = tuple[torch.Tensor, torch.Tensor] | torch.Tensor  # (h, c) of an LSTM, h of a GRU


class RecurrentLM(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if config.arch not in ("lstm", "gru"):
            raise ValueError(f"RecurrentLM is an lstm or a gru, not {config.arch!r}")
        if not config.causal:
            raise ValueError("a recurrent LM reads left to right: it has no bidirectional (masked LM) mode")
        self.config = config
        V, padded, C = config.vocab_size, config.padded_vocab_size, config.n_embd
        self.wte = Embedding(padded, C, real_rows=V)
        self.drop = nn.Dropout(config.dropout)
        rnn = nn.LSTM if config.arch == "lstm" else nn.GRU
        self.rnn = rnn(C, C, num_layers=config.n_layer, bias=config.bias, batch_first=True,
                       dropout=config.dropout if config.n_layer > 1 else 0.0)
        self.ln_f = make_norm(config)
        self.lm_head = Linear(C, padded, bias=False, real_rows=V)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.checkpoint_blocks = False  # the GPT's activation checkpointing switch; unused here
        self.register_load_state_dict_pre_hook(self._fit_vocab_rows)

    def _fit_vocab_rows(self, module, state_dict, prefix, *args) -> None:
        resize_vocab_rows(state_dict, self.config.padded_vocab_size, prefix)

    @torch.no_grad()
    def init_weights(self) -> None:
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count, vocabulary padding excluded; non_embedding also drops the token table (a tied
        head is that table, an untied one is kept), as GPT.num_params."""
        n = sum(p.numel() for p in self.parameters()) - self.padding_params()
        return n - self.config.vocab_size * self.config.n_embd if non_embedding else n

    def padding_params(self) -> int:
        per_table = (self.config.padded_vocab_size - self.config.vocab_size) * self.config.n_embd
        return per_table * (1 if self.config.tie_embeddings else 2)

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token: 6 x the parameters in matmuls (the lookup is free, a tied head is
        counted once as the head). Independent of seq_len: a recurrent step costs the same everywhere."""
        n_matmul = sum(p.numel() for p in self.parameters()) - self.padding_params()
        if not self.config.tie_embeddings:
            n_matmul -= self.config.vocab_size * self.config.n_embd
        return 6 * n_matmul

    def hidden_states(self, idx: torch.Tensor, state: State | None = None,
                      return_state: bool = False) -> torch.Tensor | tuple[torch.Tensor, State]:
        """idx (B, T) -> the final hidden states (B, T, n_embd) after the last norm; with state, idx
        continues the text that state summarises, and return_state also gives the new state."""
        y, state = self.rnn(self.drop(self.wte(idx)), state)
        h = self.ln_f(self.drop(y))
        return (h, state) if return_state else h

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.lm_head(h)
        return logits[..., : self.config.vocab_size] if self.config.pad_vocab_to > 1 else logits

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) token ids -> logits (B, T, vocab_size), from a zero initial state."""
        return self.logits(self.hidden_states(idx))

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
        eos_id: int | None = None,
        generator: torch.Generator | None = None,
        suppress_ids: list[int] | None = None,
        on_token: Callable[[int], None] | None = None,
    ) -> torch.Tensor:
        """Extend idx (B, T) by max_new_tokens, as GPT.generate; the hidden state carries the context.
        on_token(n) is called after the n-th new token (progress display)."""
        state, fresh = None, idx
        for step in range(max_new_tokens):
            if use_cache:
                h, state = self.hidden_states(fresh, state, return_state=True)
            else:
                h = self.hidden_states(idx)
            logits = self.logits(h[:, -1, :])
            if suppress_ids:
                logits[:, suppress_ids] = float("-inf")
            fresh = sample_next(logits.float(), temperature, top_k, top_p, generator)
            idx = torch.cat((idx, fresh), dim=1)
            if on_token is not None:
                on_token(step + 1)
            if eos_id is not None and bool((fresh == eos_id).all()):
                break
        return idx
