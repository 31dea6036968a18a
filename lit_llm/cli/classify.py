"""Train and evaluate text classifiers (`lit-llm classify fit|validate|test`, `classify make-data`).

The classify CLI shares lit_llm's LightningCLI base, so runs follow the same conventions (checkpoints in
<root>/checkpoints, last.ckpt at the final step after a final validation, CSV + W&B loggers, config.yaml,
the flat config logged, summary.json, --ckpt_path last resumes). Only the parser differs: the best
checkpoint is chosen by val/acc, there is no token-throughput meter, and the data links labels,
vocabulary and length to the model.
"""

from __future__ import annotations

import warnings

from lightning.pytorch.cli import LightningCLI

from lit_llm.cli.base import TRAINER_DEFAULTS, BaseCLI, add_checkpoint_arguments
from lit_llm.tasks.classify.data import ClassificationDataModule
from lit_llm.tasks.classify.module import TextClassifier
from lit_llm.tasks.classify.synthetic import make_data_main

CLASSIFY_TRAINER_DEFAULTS = {**TRAINER_DEFAULTS, "default_root_dir": "runs/classify", "val_check_interval": 50,
                             "use_distributed_sampler": True}


class ClassifyCLI(BaseCLI):
    @staticmethod
    def subcommands() -> dict:
        return {k: v for k, v in LightningCLI.subcommands().items() if k != "predict"}  # no text output here

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        add_checkpoint_arguments(parser, monitor="val/acc", mode="max")
        parser.set_defaults({"wandb.project": "lit-llm-classify"})
        parser.link_arguments("model.checkpoint", "data.checkpoint")  # texts use the checkpoint's tokenizer
        parser.link_arguments("data", "model.labels", compute_fn=ClassificationDataModule.label_list,
                              apply_on="instantiate")
        parser.link_arguments("data", "model.vocab_size", compute_fn=ClassificationDataModule.model_vocab_size,
                              apply_on="instantiate")
        parser.link_arguments("data", "model.block_size", compute_fn=ClassificationDataModule.model_block_size,
                              apply_on="instantiate")


def main(args: list[str]) -> int:
    """lit-llm classify {fit,validate,test} ... | lit-llm classify make-data --out FILE"""
    if args and args[0] == "make-data":
        make_data_main(args[1:])
        return 0
    with warnings.catch_warnings():  # args are sys.argv minus "classify": not the mistake Lightning warns of
        warnings.filterwarnings("ignore", message=".*args parameter is intended.*")
        ClassifyCLI(
            TextClassifier,
            ClassificationDataModule,
            trainer_defaults=CLASSIFY_TRAINER_DEFAULTS,
            seed_everything_default=1337,
            parser_kwargs={"prog": "lit-llm classify", "description": "Train and evaluate text classifiers."},
            args=args,
        )
    return 0
