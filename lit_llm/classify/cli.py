"""`lit-llm classify`: LightningCLI for TextClassifier + ClassificationDataModule, and `make-data`.

It subclasses lit_llm's own CLI, so runs follow the same conventions (checkpoints in <root>/checkpoints,
last.ckpt at the final step after a final validation, CSV + W&B loggers, config.yaml, the flat config
logged, summary.json, --ckpt_path last resumes). Only the parser differs: the best checkpoint is chosen by
val/acc, there is no token-throughput meter, and the data links labels, vocabulary and length to the model.
"""

from __future__ import annotations

import warnings

from lightning.pytorch.cli import LightningCLI

from lit_llm.classify.data import ClassificationDataModule
from lit_llm.classify.module import TextClassifier
from lit_llm.cli import TRAINER_DEFAULTS, LitLLMCLI, LoggedConfig, WandbOptions, add_checkpoint_arguments

CLASSIFY_TRAINER_DEFAULTS = {**TRAINER_DEFAULTS, "default_root_dir": "runs/classify", "val_check_interval": 50,
                             "use_distributed_sampler": True}


class ClassifyCLI(LitLLMCLI):
    @staticmethod
    def subcommands() -> dict:
        return {k: v for k, v in LightningCLI.subcommands().items() if k != "predict"}  # no text output here

    def add_arguments_to_parser(self, parser) -> None:
        add_checkpoint_arguments(parser, monitor="val/acc", mode="max")
        parser.add_class_arguments(WandbOptions, "wandb")
        parser.set_defaults({"wandb.project": "lit-llm-classify"})
        parser.link_arguments("model.checkpoint", "data.checkpoint")  # texts use the checkpoint's tokenizer
        parser.link_arguments("data.label_list", "model.labels", apply_on="instantiate")
        parser.link_arguments("data.model_vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.model_block_size", "model.block_size", apply_on="instantiate")


def classify_main(args: list[str]) -> int:
    """lit-llm classify {fit,validate,test} ... | lit-llm classify make-data --out FILE"""
    if args and args[0] == "make-data":
        from lit_llm.classify.synthetic import make_data_main

        make_data_main(args[1:])
        return 0
    with warnings.catch_warnings():  # args are sys.argv minus "classify": not the mistake Lightning warns of
        warnings.filterwarnings("ignore", message=".*args parameter is intended.*")
        ClassifyCLI(
            TextClassifier,
            ClassificationDataModule,
            trainer_defaults=CLASSIFY_TRAINER_DEFAULTS,
            seed_everything_default=1337,
            save_config_callback=LoggedConfig,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": "lit-llm classify", "description": "Train and evaluate text classifiers."},
            args=args,
        )
    return 0
