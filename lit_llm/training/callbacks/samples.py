"""Text generated from fixed prompts at validation, to watch the model learn: a W&B Table (columns step,
tokens_seen, prompt, sample; every row so far, so the latest table holds the run's history) and
`samples.jsonl` next to metrics.csv, which `lit-llm report` shows. The same settings (`--samples.*`)
serve `lit-llm predict`, whose completions go to predictions.jsonl.

Generation must not change training: it uses its own seeded torch.Generator (never the global RNG),
runs without gradients and puts the model back in training mode, so a resumed run still matches an
uninterrupted one bit for bit. It runs on rank 0 only, on the unwrapped model (skipped under FSDP,
whose parameters are sharded across ranks).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.strategies import FSDPStrategy

from lit_llm.errors import LitLLMError
from lit_llm.model.generation import SamplingSettings, generate_text
from lit_llm.training.lightning_internals import log_step
from lit_llm.training.loggers import wandb_loggers

SAMPLES_FILE = "samples.jsonl"
PREDICTIONS_FILE = "predictions.jsonl"
COLUMNS = ["step", "tokens_seen", "prompt", "sample"]


class GeneratedSamples(Callback):
    def __init__(
        self,
        enabled: bool = True,
        prompts: list[str] | None = None,
        max_new_tokens: int = 64,
        temperature: float = 0.8,
        top_k: int | None = 200,
        top_p: float | None = None,
        every_n_validations: int = 1,
        num_default_prompts: int = 2,
        prompt_tokens: int = 8,
        seed: int = 1337,
    ) -> None:
        """
        Args:
            enabled: generate samples at validations during fit.
            prompts: the prompts (default: num_default_prompts snippets of the validation split).
            max_new_tokens: tokens generated per prompt (validation samples and `predict`).
            temperature: sampling temperature (0 = greedy).
            top_k: sample among the k most likely tokens (None = all).
            top_p: nucleus sampling threshold (None = off).
            every_n_validations: generate at every n-th validation of a fit (the first one included).
            num_default_prompts: without prompts, how many snippets of the validation split to use.
            prompt_tokens: the length in tokens of those snippets.
            seed: seed of the sampling generator (the same at every validation, so samples compare;
                `predict` uses seed + the prompt's index).
        """
        if max_new_tokens < 1 or every_n_validations < 1 or num_default_prompts < 0 or prompt_tokens < 1:
            raise LitLLMError("--samples.max_new_tokens, --samples.every_n_validations and "
                              "--samples.prompt_tokens must be >= 1")
        if temperature < 0:
            raise LitLLMError(f"--samples.temperature must be >= 0 (0 = greedy), got {temperature}")
        self.enabled, self.prompts = enabled, prompts
        self.settings = SamplingSettings(max_new_tokens, temperature, top_k, top_p, seed)
        self.every_n_validations, self.seed = every_n_validations, seed
        self.num_default_prompts, self.prompt_tokens = num_default_prompts, prompt_tokens
        self.validations = 0
        self.predictions: list[dict] = []
        self.rows: list[dict] | None = None  # the run's rows so far (read back from the file on resume)
        self.warned = False

    def seeded(self, index: int) -> SamplingSettings:
        s = self.settings
        return SamplingSettings(s.max_new_tokens, s.temperature, s.top_k, s.top_p, s.seed + index)

    # --- prompts -----------------------------------------------------------------------------------
    def default_prompts(self, trainer: L.Trainer, tokenizer) -> list[str]:
        """Snippets spread evenly over the validation split, decoded."""
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "stream"):
            return []
        stream = dm.stream("val")
        n = self.num_default_prompts
        if len(stream) < self.prompt_tokens or n == 0:
            return []
        starts = [i * (len(stream) - self.prompt_tokens) // n for i in range(n)]
        return [tokenizer.decode(stream.read(s, self.prompt_tokens).tolist(), skip_special_tokens=False)
                for s in starts]

    def _warn(self, message: str) -> None:
        if not self.warned:
            print(f"lit-llm: warning: {message}", file=sys.stderr)
            self.warned = True

    # --- hooks -------------------------------------------------------------------------------------
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self.validations += 1
        if (self.validations - 1) % self.every_n_validations:
            return
        log_dir = trainer.log_dir  # a collective under DDP: every rank must ask
        if not trainer.is_global_zero:
            return
        if isinstance(trainer.strategy, FSDPStrategy):
            self._warn("no samples under FSDP (the parameters are sharded across ranks)")
            return
        rows = self.generate(trainer, pl_module)
        if rows:
            self.write(Path(log_dir or trainer.default_root_dir) / SAMPLES_FILE, rows)
            self.log_table(trainer, rows)

    def generate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[dict]:
        if pl_module.tokenizer_json is None:
            return []
        if not pl_module.config.causal:
            self._warn("no samples: a masked LM (bidirectional attention) cannot generate text")
            return []
        tokenizer = pl_module.tokenizer()
        prompts = self.prompts if self.prompts is not None else self.default_prompts(trainer, tokenizer)
        rows = []
        with torch.no_grad():
            for i, prompt in enumerate(prompts):
                try:
                    text = generate_text(pl_module.model, tokenizer, prompt, self.seeded(i))[0]
                except LitLLMError as err:  # e.g. a prompt with characters the tokenizer does not know
                    self._warn(f"sample prompt {prompt!r} skipped: {err}")
                    continue
                rows.append({"step": trainer.global_step, "tokens_seen": int(pl_module.tokens_seen),
                             "prompt": prompt, "sample": text})
        return rows

    def write(self, path: Path, rows: list[dict]) -> None:
        """Appends rows to samples.jsonl. The first write of a (resumed) fit first drops the rows from
        this step on, which a killed run wrote after the checkpoint this fit resumed from."""
        if self.rows is None:
            self.rows = []
            if path.exists():
                step = rows[0]["step"]
                kept = [r for r in map(json.loads, path.read_text().splitlines()) if r.get("step", 0) < step]
                tmp = path.with_suffix(".tmp")
                tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
                os.replace(tmp, path)
                self.rows = kept
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        self.rows += rows

    def log_table(self, trainer: L.Trainer, rows: list[dict]) -> None:
        loggers = wandb_loggers(trainer)
        if not loggers:
            return
        import wandb

        table = wandb.Table(columns=COLUMNS, data=[[r[c] for c in COLUMNS] for r in self.rows])
        step = log_step(trainer)  # as Lightning logs the validation row
        for logger in loggers:
            logger.log_metrics({"samples": table, "tokens_seen": float(rows[0]["tokens_seen"])}, step=step)

    # --- predict: completions of --data.prompts -------------------------------------------------------
    def on_predict_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        text = generate_text(pl_module.model, pl_module.tokenizer(), batch, self.seeded(batch_idx))[0]
        self.predictions.append({"prompt": batch, "completion": text})

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        log_dir = trainer.log_dir  # a collective under DDP: every rank must ask
        if not trainer.is_global_zero:
            return
        out = Path(log_dir or trainer.default_root_dir) / PREDICTIONS_FILE
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w") as f:
            for item in self.predictions:
                f.write(json.dumps(item) + "\n")
                print(f"--- {item['prompt']!r}\n{item['completion']}")
        print(f"wrote {len(self.predictions)} completions to {out}")
