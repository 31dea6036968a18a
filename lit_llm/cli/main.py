"""`lit-llm COMMAND ...`: the table of commands. fit/validate/test/predict are LightningCLI's (lm.py); each
other command parses its own arguments in its own module and returns an exit code (None = 0)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from lit_llm.cli import classify, convert, generate, lm, prepare, report, scaling, sweep
from lit_llm.errors import LitLLMError, yaml_problem
from lit_llm.training.callbacks.memory import oom_message
from lit_llm.training.checkpointing import STOPPED_BY
from lit_llm.training.loggers import VERSION_ENV, finish_wandb
from lit_llm.training.rundirs import end_run

LIGHTNING_COMMANDS = {
    "fit": "train a model (default: the embedded corpus, a small GPT, CPU-friendly)",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the test split",
    "predict": "complete the prompts of --data.prompts FILE with a checkpoint",
}
COMMANDS = {  # name: (module with main(args), one line of help)
    "prepare": (prepare, "tokenize a corpus into shards (clean, dedup, train or load a tokenizer)"),
    "generate": (generate, "sample text from a checkpoint"),
    "sweep": (sweep, "run a W&B sweep file offline (grid, random, bayes; resumable)"),
    "scaling": (scaling, "fit scaling laws to runs or a CSV and plot compute-optimal frontiers"),
    "report": (report, "write an offline HTML report over runs"),
    "convert": (convert, "convert checkpoints to and from Hugging Face and safetensors"),
    "classify": (classify, "train and evaluate text classifiers"),
}


def usage() -> str:
    lines = ["usage: lit-llm COMMAND [options]   (lit-llm COMMAND --help for a command's options)", "",
             "commands:"]
    for name, text in [*LIGHTNING_COMMANDS.items(), *((n, h) for n, (_, h) in COMMANDS.items())]:
        lines.append(f"  {name:<10} {text}")
    return "\n".join(lines)


def close_process_group(barrier: bool) -> None:
    """Destroy the process group before exit: left to interpreter shutdown, gloo's threads can abort the
    process. After success, ranks first wait for each other, so rank 0's store outlives the others' use."""
    if dist.is_available() and dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()


def check_config_files(args: list[str]) -> None:
    """A --config file that is not valid YAML: one line naming the file and the place (jsonargparse's
    message names neither)."""
    for i, arg in enumerate(args):
        if arg in ("-c", "--config") and i + 1 < len(args):
            path = args[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        else:
            continue
        try:
            yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as err:
            raise LitLLMError(f"config file {path} is not valid YAML: {yaml_problem(err)}") from None
        except (OSError, UnicodeDecodeError):
            continue  # a missing or unreadable file: the parser's own message says so


def run(args: list[str], from_argv: bool) -> int:
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    check_config_files(args)
    if args[0] in COMMANDS:
        return COMMANDS[args[0]][0].main(args[1:]) or 0
    lm.main(None if from_argv else args)
    close_process_group(barrier=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    code = None
    try:
        code = run(args, from_argv=argv is None)
        return code
    except LitLLMError as err:
        print(f"lit-llm: error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # jsonargparse wraps errors of linked values (the data's vocabulary, labels...)
        cause = err.__cause__ or err.__context__
        if not isinstance(cause, LitLLMError):
            raise
        print(f"lit-llm: error: {cause}", file=sys.stderr)
        return 2
    except MisconfigurationException as err:  # e.g. configs/trainer/gpu.yaml on a machine without a GPU
        print(f"lit-llm: error: {err} (Lightning; check --trainer.accelerator/devices/strategy)", file=sys.stderr)
        return 2
    except torch.OutOfMemoryError as err:
        print(f"lit-llm: error: {oom_message(err)}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        if "can't allocate memory" not in str(err):  # the CPU allocator's out-of-memory error
            raise
        print(f"lit-llm: error: {oom_message(err)}", file=sys.stderr)
        return 2
    except SIGTERMException:  # RunCheckpoint saved last.ckpt at the end of the step
        interrupted = STOPPED_BY.get("signal") == signal.SIGINT
        print(f"lit-llm: stopped by {'Ctrl-C' if interrupted else 'SIGTERM/SIGUSR1'} (during training, last.ckpt is "
              "saved first: resume with --ckpt_path last)", file=sys.stderr)
        return 130 if interrupted else 143
    except BrokenPipeError:  # output piped into `head` and the like
        return 0
    except KeyboardInterrupt:
        print("lit-llm: interrupted", file=sys.stderr)
        return 130
    finally:
        close_process_group(barrier=False)
        finish_wandb()
        end_run(failed=code != 0)
        os.environ.pop(VERSION_ENV, None)  # the log version this run claimed, passed to the ranks it launched


if __name__ == "__main__":
    sys.exit(main())
