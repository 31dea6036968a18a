"""Run by tests/test_scale_out.py and test_epochs.py (not collected): a short fit whose ranks record the
samples they read (windows numbers and, in an epoch fit, the epoch last).
Lightning's DDP launcher re-runs this script for the other ranks."""

import json
import sys
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger

from lit_llm.data.datamodule import TextDataModule
from lit_llm.training.module import LanguageModel


class RecordSamples(L.Callback):
    def __init__(self, out: str) -> None:
        self.out, self.ids = out, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.ids.append(batch["sample_ids"].tolist() + ([f"epoch{batch['epoch']}"] if "epoch" in batch else []))

    def on_train_end(self, trainer, pl_module) -> None:
        Path(self.out, f"ids-rank{trainer.global_rank}.json").write_text(json.dumps(self.ids))


def main() -> None:
    corpus, out, cache, devices, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    epochs = int(sys.argv[6]) or None if len(sys.argv) > 6 else None  # an epoch fit instead of 30 steps (0: steps)
    arch = sys.argv[7] if len(sys.argv) > 7 else "transformer"
    L.seed_everything(0)
    dm = TextDataModule(corpus, "char", block_size=16, batch_size=batch, cache_dir=cache)
    model = LanguageModel(vocab_size=dm.prepare_once().vocab_size, block_size=16, arch=arch, n_layer=1, n_head=2,
                          n_embd=32, lr=3e-3, warmup_steps=0)
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                        max_steps=-1 if epochs else 30, max_epochs=epochs, logger=CSVLogger(out, name="", version=""), log_every_n_steps=1,
                        limit_val_batches=0, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, use_distributed_sampler=False, callbacks=[RecordSamples(out)])
    trainer.fit(model, dm)
    from lit_llm.cli.main import close_process_group

    close_process_group(barrier=True)


if __name__ == "__main__":
    main()
