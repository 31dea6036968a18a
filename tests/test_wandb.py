"""W&B: what a run records (metric axes, config, summary, samples table), read back from the offline run
files with `wandb leet inspect`; samples that leave training untouched; the resume fallback."""

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import lightning
import pytest
import torch
import wandb
import yaml

from lit_llm.cli.main import main
from lit_llm.studies.sweep import SweepRunner
from lit_llm.training.callbacks.samples import GeneratedSamples
from lit_llm.training.loggers import RESUME_WAIT_ENV, TOKEN_AXIS_METRICS, ResumableWandbLogger, WandbOptions, make_loggers
from test_cli import fit_args, read_csv

PROMPTS = ["ROMEO:", "JULIET:"]


def inspect(run_dir: Path, *extra: str):
    wandb_bin = Path(sys.executable).parent / "wandb"
    out = subprocess.run([str(wandb_bin), "leet", "inspect", *extra, "--json", str(run_dir)],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        pytest.skip(f"wandb leet inspect unavailable: {out.stderr.strip()[:200]}")
    return out.stdout


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True, timeout=30).stdout.strip()


@pytest.fixture
def wandb_run(tiny_text, tmp_path):
    """A fit as `lit-llm sweep` launches it, in a git checkout with an uncommitted change."""
    git("init", "-q", cwd=tmp_path)
    (tmp_path / "notes.txt").write_text("v1")
    git("add", "notes.txt", cwd=tmp_path)
    git("commit", "-q", "-m", "init", cwd=tmp_path)
    (tmp_path / "notes.txt").write_text("v2")  # dirty
    sweep_file = tmp_path / "tiny.yaml"
    sweep_file.write_text(yaml.safe_dump({"name": "tiny", "method": "grid", "command": ["lit_llm", "${args}"],
                                          "parameters": {"model.lr": {"values": [1e-3]}}}))
    runner = SweepRunner(str(sweep_file), str(tmp_path / "sweep"), None, 1, True, 0)
    wandb_args = [a for a in runner.command(runner.planned()[0]) if a.startswith("--wandb.")]
    assert main(fit_args(tiny_text, "runs", 12, "--samples.prompts", json.dumps(PROMPTS),
                         "--samples.max_new_tokens", "12", *wandb_args)) == 0
    root = tmp_path / "runs"
    run_dir = next((root / "wandb").glob("offline-run-*"))
    records = [json.loads(line) for line in inspect(run_dir).splitlines() if line.strip()]
    return root, run_dir, records, json.loads(inspect(run_dir, "--summary"))


def test_metrics_use_tokens_seen_as_x_axis(wandb_run):
    root, _, records, _ = wandb_run
    defined = {r["metric"]["name"]: r["metric"] for r in records if r["type"] == "metric" and "name" in r["metric"]}
    for name in TOKEN_AXIS_METRICS:
        assert defined[name].get("step_metric") == "tokens_seen", name
    assert "tokens_seen" in defined
    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    with_axis = [h for h in history if any(k in h for k in TOKEN_AXIS_METRICS)]
    assert with_axis and all("tokens_seen" in h for h in with_axis)  # every point has its x value
    # validation rows: the tokens after the step they follow, as metrics.csv has them
    rows = read_csv(root / "lightning_logs/version_0/metrics.csv")
    csv_val = [(float(r["tokens_seen"]), float(r["val/loss"])) for r in rows if r["val/loss"]]
    assert [t for t, _ in csv_val] == [5 * 64, 10 * 64, 12 * 64]
    wandb_val = [(h["tokens_seen"], h["val/loss"]) for h in history if "val/loss" in h]
    assert [t for t, _ in wandb_val] == [t for t, _ in csv_val]
    assert [v for _, v in wandb_val] == pytest.approx([v for _, v in csv_val])


def test_config_is_flat_and_complete(wandb_run, tmp_path):
    _, _, records, inspected = wandb_run
    config = inspected["config"]
    assert config["model.n_layer"] == 2 and config["model.vocab_size"] > 0
    assert config["data.block_size"] == 16 and config["data.tokenizer"] == "char"
    assert config["trainer.max_steps"] == 12 and config["trainer.log_every_n_steps"] == 2
    assert config["samples.prompts"] == PROMPTS and config["resolved.tokens_per_step"] == 4 * 16
    assert config["git.commit"] == git("rev-parse", "HEAD", cwd=tmp_path) and config["git.dirty"] is True
    assert config["versions.torch"] == torch.__version__ and config["versions.wandb"] == wandb.__version__
    assert config["versions.lightning"] == lightning.__version__
    assert config["versions.python"] == platform.python_version() and config["versions.lit_llm"]
    assert not any(isinstance(v, dict) for v in config.values() if v is not config.get("_wandb"))
    run = next(r["run"] for r in records if r["type"] == "run")
    assert run["tags"] == ["sweep:tiny", "method:grid"] and run.get("run_group") == "tiny"


def test_summary_holds_size_and_cost(wandb_run):
    root, _, _, inspected = wandb_run
    summary = inspected["summary"]
    ckpt = torch.load(root / "checkpoints/last.ckpt", weights_only=True)
    state, vocab = ckpt["state_dict"], ckpt["lit_llm"]["model_config"]["vocab_size"]
    unique = {t.untyped_storage().data_ptr(): t.numel() for k, t in state.items() if k.startswith("model.")}
    wte = state["model.wte.weight"]
    padding = (wte.shape[0] - vocab) * wte.shape[1]  # the zero rows of vocabulary padding are not parameters
    params = sum(unique.values()) - padding  # the tied output head counted once
    embeddings = vocab * wte.shape[1] + state["model.wpe.weight"].numel()
    assert summary["params"] == params and summary["params_non_embedding"] == params - embeddings
    assert summary["tokens_seen"] == 12 * 4 * 16
    assert summary["flops"] == summary["flops_per_token"] * summary["tokens_seen"] > 0
    rows = read_csv(root / "lightning_logs/version_0/metrics.csv")
    losses = [float(r["val/loss"]) for r in rows if r["val/loss"]]
    assert summary["val/loss"] == pytest.approx(losses[-1])  # a plain number: sweeps and `lit-llm scaling` read it
    assert summary["best/val_loss"] == pytest.approx(min(losses))


def test_samples_table_matches_samples_jsonl(wandb_run):
    root, run_dir, _, inspected = wandb_run
    lines = (root / "lightning_logs/version_0/samples.jsonl").read_text().splitlines()
    samples = [json.loads(x) for x in lines]
    assert [(s["step"], s["tokens_seen"], s["prompt"]) for s in samples] == [
        (step, step * 64, p) for step in (5, 10, 12) for p in PROMPTS]
    assert all(s["sample"].startswith(s["prompt"]) and len(s["sample"]) > len(s["prompt"]) for s in samples)
    latest = inspected["summary"]["samples"]
    assert latest["_type"] == "table-file" and latest["nrows"] == len(samples)
    table = json.loads((run_dir / "files" / latest["path"]).read_text())
    assert table["columns"] == ["step", "tokens_seen", "prompt", "sample"]
    assert table["data"] == [[s["step"], s["tokens_seen"], s["prompt"], s["sample"]] for s in samples]
    tables = list((run_dir / "files/media/table").glob("samples_*.table.json"))
    assert len(tables) == 3  # one per validation, each with every row so far


def test_samples_leave_training_untouched(tiny_text, tmp_path):
    """With dropout the training draws from the global RNG at every step: generation drawing from it
    too would change the weights."""
    common = ["--wandb.mode", "disabled", "--model.dropout", "0.1", "--samples.max_new_tokens", "16"]
    assert main(fit_args(tiny_text, "with", 12, *common)) == 0
    assert main(fit_args(tiny_text, "without", 12, *common, "--samples.enabled", "false")) == 0
    a = torch.load(tmp_path / "with/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "without/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    samples = [json.loads(x) for x in (tmp_path / "with/lightning_logs/version_0/samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 * 2 and samples[0]["prompt"] != samples[1]["prompt"]  # 2 snippets of the val split
    assert not (tmp_path / "without/lightning_logs/version_0/samples.jsonl").exists()


def test_resumed_fit_replaces_samples_written_after_its_checkpoint(tmp_path):
    path = tmp_path / "samples.jsonl"
    killed = [{"step": s, "tokens_seen": s * 64, "prompt": "a", "sample": f"old{s}"} for s in (5, 10, 15)]
    path.write_text("".join(json.dumps(r) + "\n" for r in killed))
    callback = GeneratedSamples()
    callback.write(path, [{"step": 10, "tokens_seen": 640, "prompt": "a", "sample": "new10"}])
    callback.write(path, [{"step": 15, "tokens_seen": 960, "prompt": "a", "sample": "new15"}])
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert [r["sample"] for r in rows] == ["old5", "new10", "new15"]
    assert callback.rows == rows  # the W&B table continues with the earlier rows too


def test_log_model_and_tags_reach_the_logger(capsys, tmp_path, monkeypatch):
    offline = make_loggers(str(tmp_path), WandbOptions(mode="offline", log_model=True, tags=["x"]))[1]
    assert offline._log_model is False and "needs W&B online" in capsys.readouterr().err
    monkeypatch.setattr("lit_llm.training.loggers.resolve_wandb_mode", lambda mode: "online")
    online = make_loggers(str(tmp_path), WandbOptions(log_model="all", group="g", tags=["x"]))[1]
    assert online._log_model == "all" and online._wandb_init["tags"] == ["x"] and online._wandb_init["group"] == "g"


# --- resuming a W&B run a killed job's service still holds ----------------------------------------
def held_run(monkeypatch, tmp_path, failures: int, leave_data: bool = False):
    """A ResumableWandbLogger whose W&B start fails `failures` times with W&B's "in use" error, each
    failed attempt leaving a run directory of the id behind, as W&B does."""
    from lightning.pytorch.loggers import WandbLogger

    attempts = []

    def experiment(self):
        if self._experiment is None:
            run_id = self._wandb_init.get("id")
            attempts.append(run_id)
            if run_id and len(attempts) <= failures:
                run_dir = tmp_path / "wandb" / f"offline-run-2026010{len(attempts)}_000000-{run_id}"
                (run_dir / "files").mkdir(parents=True)
                (run_dir / "logs").mkdir()
                (run_dir / "logs/debug.log").write_text("attempt failed")
                (run_dir / f"run-{run_id}.wandb").write_bytes(b"data" if leave_data else b"")
                raise RuntimeError(f"run {run_id} is in use by another process")
            self._experiment = f"run {run_id or 'new'}"
        return self._experiment

    monkeypatch.setattr(WandbLogger, "experiment", property(experiment))
    monkeypatch.setattr(ResumableWandbLogger, "retry_interval", 0.05)
    earlier = tmp_path / "wandb/offline-run-20250101_000000-abc123"  # the killed job's run: never touched
    (earlier / "files").mkdir(parents=True)
    (earlier / "run-abc123.wandb").write_bytes(b"")
    logger = ResumableWandbLogger(save_dir=str(tmp_path), offline=True, id="abc123", resume="allow")
    return logger, attempts, earlier


def test_resume_retries_and_removes_its_empty_attempts(monkeypatch, tmp_path):
    monkeypatch.setenv(RESUME_WAIT_ENV, "30")
    logger, attempts, earlier = held_run(monkeypatch, tmp_path, failures=2)
    assert logger.experiment == "run abc123" and attempts == ["abc123"] * 3
    assert [p.name for p in (tmp_path / "wandb").iterdir()] == [earlier.name]


def test_resume_falls_back_to_a_new_run_within_the_wait(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(RESUME_WAIT_ENV, "0.5")
    logger, attempts, earlier = held_run(monkeypatch, tmp_path, failures=10**6, leave_data=True)
    start = time.monotonic()
    assert logger.experiment == "run new"
    assert time.monotonic() - start < 5
    assert attempts[-1] is None and len(attempts) > 2
    assert "still held by another process" in capsys.readouterr().err
    # attempts that left data behind are kept (W&B's sync may need them); so is the killed job's run
    kept = sorted(p.name for p in (tmp_path / "wandb").iterdir())
    assert earlier.name in kept and len(kept) == len(attempts)
