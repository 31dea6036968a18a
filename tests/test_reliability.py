"""Reliability (issue #6): a kill during a checkpoint save, SIGTERM/SIGUSR1 checkpoints, the non-finite
loss guard, one-line errors for bad input with nothing on disk changed, and no secrets in run files."""

import hashlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lit_llm.cli.main import main
from helpers import ROOT, csv_rows, fit_cmd, kill_point, nan_steps, wait_for_step, with_slow_saves

MAX_STEPS = 28


def load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def assert_same_weights(a: Path, b: Path, context: str = "") -> None:
    x, y = load(a), load(b)
    assert x["global_step"] == y["global_step"]
    for key in x["state_dict"]:
        assert torch.equal(x["state_dict"][key], y["state_dict"][key]), f"{key} differs {context}"


def assert_every_step_logged_once(root: Path, context: str = "") -> None:
    rows = csv_rows(root)
    train_steps = [int(r["step"]) for r in rows if r["train/loss"]]
    assert train_steps == list(range(MAX_STEPS)), context
    assert [int(r["step"]) for r in rows if r["val/loss"]] == [9, 19, 27], context


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A corpus, an environment and one uninterrupted run to compare interrupted ones with."""
    from conftest import SHARED

    if not (SHARED / "tinyshakespeare.txt").exists():
        pytest.skip("tinyshakespeare.txt not present")
    base = tmp_path_factory.mktemp("reference")
    corpus = base / "tiny.txt"
    corpus.write_text((SHARED / "tinyshakespeare.txt").read_text()[:30_000])
    tests = str(Path(__file__).parent)  # faults.py, for the fault-injecting callback
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LIT_LLM_CACHE": str(base / "cache"),
           "PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))}
    subprocess.run(fit_cmd(corpus, base / "whole"), check=True, capture_output=True, env=env, timeout=600)
    return corpus, env, base / "whole"


@pytest.mark.slow
def test_kill_during_checkpoint_save_keeps_previous_and_resumes_exactly(reference, tmp_path):
    corpus, env, whole = reference
    root = tmp_path / "killed"
    # every save pauses halfway through writing its temporary file: kill the job inside the second save
    proc = subprocess.Popen(with_slow_saves(fit_cmd(corpus, root), 2), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ckpts, deadline = root / "checkpoints", time.time() + 300
    while not ((ckpts / "last.ckpt").exists() and list(ckpts.glob(".last.ckpt.tmp-*"))):
        assert proc.poll() is None and time.time() < deadline, "no second save seen"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(ckpts.glob(".last.ckpt.tmp-*")), "the half-written file should be left behind by the kill"
    previous = load(ckpts / "last.ckpt")  # the previous checkpoint is whole and loads
    assert previous["global_step"] == 3

    run = subprocess.run(fit_cmd(corpus, root, "--ckpt_path", "last"), capture_output=True, text=True, env=env,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert_same_weights(whole / "checkpoints/last.ckpt", ckpts / "last.ckpt")
    assert_every_step_logged_once(root)
    assert not list(ckpts.glob(".*.tmp-*")), "stale temporary files are removed on resume"


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT])
def test_signal_saves_checkpoint_then_resume_is_exact(reference, tmp_path, signum):
    """SIGTERM and SIGUSR1 (preemption) and a first Ctrl-C finish the step, save last.ckpt and exit 143 (130
    for Ctrl-C); the resume equals the uninterrupted run bitwise."""
    corpus, env, whole = reference
    root = tmp_path / "preempted"
    # a save every step, each held 200 ms by the fault hook, paces the run: a toy step alone takes ~5 ms, so
    # the signal could otherwise land only after the last step (the CSV is polled every 50 ms; on a loaded
    # machine the poll lagged the 6 steps x 50 ms that a 50 ms hold left, and the run had ended)
    cmd = fit_cmd(corpus, root, "--checkpoint.every_n_train_steps", "1")
    # a shell's background job (pytest started with `&`) ignores Ctrl-C, which the fit then respects (as
    # under nohup): give the fit the default handling a user's fit at a terminal has
    proc = subprocess.Popen(with_slow_saves(cmd, 0.2), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for_step(root, kill_point(3, 22), proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == (130 if signum == signal.SIGINT else 143), err[-2000:]
    assert "resume with --ckpt_path last" in err
    stopped = load(root / "checkpoints/last.ckpt")["global_step"]
    assert 3 < stopped < MAX_STEPS

    run = subprocess.run(cmd + ["--ckpt_path", "last"], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert_same_weights(whole / "checkpoints/last.ckpt", root / "checkpoints/last.ckpt", f"(stopped at {stopped})")
    assert_every_step_logged_once(root, f"stopped at {stopped}")


def guard_cmd(corpus: Path, root: Path, steps: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lit_llm", "fit", "--config", str(ROOT / "configs/model/toy.yaml"),
            "--data.corpus", str(corpus), "--data.tokenizer", "char", "--data.block_size", "16",
            "--data.batch_size", "4", "--trainer.max_steps", str(steps), "--trainer.val_check_interval", "100",
            "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(root), "--wandb.mode", "disabled", *extra]


def test_non_finite_step_is_skipped_without_touching_the_weights(reference, tmp_path):
    corpus, env, _ = reference
    subprocess.run(guard_cmd(corpus, tmp_path / "five", 5), check=True, capture_output=True, env=env, timeout=300)
    run = subprocess.run(guard_cmd(corpus, tmp_path / "nan", 6, *nan_steps("5")), capture_output=True, text=True,
                         timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "non-finite loss or gradient: 1 step(s) skipped up to step 5 (1 of at most 3)" in run.stderr
    # the sixth step was skipped: its weights are those after five steps, and Adam's moments too
    five, nan = load(tmp_path / "five/checkpoints/last.ckpt"), load(tmp_path / "nan/checkpoints/last.ckpt")
    for key, value in five["state_dict"].items():
        assert torch.equal(value, nan["state_dict"][key]), key
    for a, b in zip(five["optimizer_states"][0]["state"].values(), nan["optimizer_states"][0]["state"].values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
    losses = {int(r["step"]): float(r["train/loss"]) for r in csv_rows(tmp_path / "nan") if r["train/loss"]}
    assert sorted(losses) == list(range(6))  # the skipped step is still logged (the hook poisons the gradient only)


def test_repeated_non_finite_steps_stop_with_a_loadable_last_good_checkpoint(reference, tmp_path):
    corpus, env, _ = reference
    root = tmp_path / "nan"
    run = subprocess.run(guard_cmd(corpus, root, 20, "--checkpoint.every_n_train_steps", "2",
                                   "--model.max_nonfinite_skips", "2", *nan_steps("4+")),
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 2
    err = [line for line in run.stderr.splitlines() if line.startswith("lit-llm:")]
    assert err[-1].startswith("lit-llm: error: non-finite loss or gradient at step 6 after 2 skipped steps")
    assert "Last good checkpoint: " + str(root / "checkpoints/last.ckpt") in err[-1]
    assert "Traceback" not in run.stderr
    ckpt = load(root / "checkpoints/last.ckpt")
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    out = subprocess.run([sys.executable, "-m", "lit_llm", "generate", "--checkpoint", str(root / "checkpoints/last.ckpt"),
                          "--prompt", "ROMEO:", "--max_new_tokens", "5"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.startswith("ROMEO:")


# --- bad input: one line, non-zero exit, nothing on disk changed ----------------------------------
def snapshot(directory: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def workspace(reference):
    """A trained run (checkpoint, logs) and a few corpora; the cases below must leave all of it as it is."""
    corpus, env, whole = reference
    base = whole.parent
    (base / "empty.txt").write_text("")
    (base / "binary.bin").write_bytes(bytes(range(256)) * 64)
    (base / "small.txt").write_text(corpus.read_text()[:2000])
    (base / "truncated.ckpt").write_bytes((whole / "checkpoints/last.ckpt").read_bytes()[:50_000])
    (base / "a-file").write_text("not a directory")
    (base / "empty-values.yaml").write_text("method: grid\nparameters:\n  model.lr:\n    values: []\n")
    (base / "bad.jsonl").write_text('{"text": "fine"}\n{"text": "a\tb"}\n')  # a raw tab inside a JSON string
    (base / "bad-indent.yaml").write_text("model:\n  n_layer: 2\n   n_head: 4\n")
    (base / "bad-sweep.yaml").write_text("method: grid\nparameters:\n  model.lr: {values: [1\n")
    return base


def fit(base: Path, *extra: str) -> list[str]:
    return ["fit", "--config", str(ROOT / "configs/model/toy.yaml"), "--data.corpus", str(base / "tiny.txt"),
            "--data.tokenizer", "char", "--data.block_size", "16", "--data.batch_size", "4",
            "--trainer.max_steps", "2", "--trainer.enable_progress_bar", "false", "--wandb.mode", "disabled",
            "--trainer.default_root_dir", str(base / "whole"), *extra]


LAST = "whole/checkpoints/last.ckpt"
BAD_INPUTS = {  # case: (arguments with {base} for the workspace, what the message says)
    "missing corpus": (["--data.corpus", "{base}/nope.txt"], "not found"),
    "empty corpus": (["--data.corpus", "{base}/empty.txt"], "empty"),
    "binary corpus": (["--data.corpus", "{base}/binary.bin"], "binary"),
    "unknown config key": (["--model.n_layers", "3"], "unrecognized arguments: --model.n_layers"),
    "wrong type": (["--model.n_layer", "abc"], "model.n_layer"),
    "block larger than val split": (["--data.corpus", "{base}/small.txt", "--data.block_size", "512"],
                                    "the val split has"),
    "tokenizer/model vocab mismatch": (["--ckpt_path", "{base}/" + LAST, "--data.tokenizer", "bpe",
                                        "--data.vocab_size", "300"], "vocab_size: checkpoint 62, this run 300"),
    "checkpoint of another architecture": (["--ckpt_path", "{base}/" + LAST, "--model.n_layer", "3"],
                                           "n_layer: checkpoint 2, this run 3"),
    "truncated checkpoint (fit)": (["--ckpt_path", "{base}/truncated.ckpt"], "truncated"),
    "zero lr": (["--model.lr", "0"], "--model.lr must be positive"),
    "negative lr": (["--model.lr=-1e-3"], "--model.lr must be positive"),
    "zero batch size": (["--data.batch_size", "0"], "--data.batch_size must be positive"),
    "negative batch size": (["--data.batch_size", "-4"], "--data.batch_size must be positive"),
    "zero steps": (["--trainer.max_steps", "0"], "--trainer.max_steps must be positive"),
    "negative steps": (["--trainer.max_steps", "-5"], "--trainer.max_steps must be positive"),
    "output directory not writable": (["--trainer.default_root_dir", "{base}/a-file/runs"], "cannot write to"),
    "generate: empty prompt": (["generate", "--checkpoint", "{base}/" + LAST, "--prompt", ""], "prompt is empty"),
    "generate: unknown characters": (["generate", "--checkpoint", "{base}/" + LAST, "--prompt", "Olá ✓"],
                                     "characters the tokenizer does not know: 'á✓'"),
    "generate: truncated checkpoint": (["generate", "--checkpoint", "{base}/truncated.ckpt", "--prompt", "a"],
                                       "truncated"),
    "generate: a directory as checkpoint": (["generate", "--checkpoint", "{base}/whole/checkpoints", "--prompt", "a"],
                                            "is a directory; give a checkpoint file"),
    "generate: negative temperature": (["generate", "--checkpoint", "{base}/" + LAST, "--prompt", "a",
                                        "--temperature", "-1"], "--temperature must be >= 0"),
    "generate: unbounded max_new_tokens": (["generate", "--checkpoint", "{base}/" + LAST, "--prompt", "a",
                                            "--max_new_tokens", "1000000000"], "is more than 100,000"),
    "samples: negative temperature": (["--samples.temperature=-1"], "--samples.temperature must be >= 0"),
    "sweep: a parameter without values": (["sweep", "{base}/empty-values.yaml", "--dry-run"], "has no values"),
    # issue #14 item 10
    "a directory as --ckpt_path (fit)": (["--ckpt_path", "{base}/whole/checkpoints"], "is a directory; give a checkpoint file"),
    "malformed JSON line": (["--data.corpus", "{base}/bad.jsonl"],
                            "bad.jsonl:2 is not valid JSON (Invalid control character at column 12)"),
    "config file with a YAML indentation error": (["--config", "{base}/bad-indent.yaml"],
                                                  "bad-indent.yaml is not valid YAML: mapping values are not "
                                                  "allowed here at line 3, column 10"),
    "sweep: invalid YAML": (["sweep", "{base}/bad-sweep.yaml", "--dry-run"], "is not valid YAML: expected ',' or ']', but got '<stream end>' at line 4"),
    "split fractions summing past 1": (["--data.val_fraction", "0.6", "--data.test_fraction", "0.5"],
                                       "must be in [0, 1) and sum below 1"),
    "wrong type: split_by": (["--data.split_by", "random"], "data.split_by"),
    "memory headroom out of range": (["--memory.headroom", "0"], "--memory.headroom must be in (0, 1]"),
    "zero val_check_interval": (["--trainer.val_check_interval", "0"], "--trainer.val_check_interval must be positive"),
    "zero accumulate_grad_batches": (["--trainer.accumulate_grad_batches", "0"],
                                     "--trainer.accumulate_grad_batches must be positive"),
    "zero log_every_n_steps": (["--trainer.log_every_n_steps", "0"], "--trainer.log_every_n_steps must be positive"),
    "zero tokens_per_step": (["--tokens_per_step", "0"], "--tokens_per_step must be positive"),
    "negative eval batch size": (["--data.eval_batch_size=-1"], "--data.eval_batch_size must be positive"),
    "negative num_workers": (["--data.num_workers=-1"], "--data.num_workers >= 0, got None and -1"),
    "negative min_chars": (["--data.clean.min_chars=-5"], "--data.clean.min_chars and --data.clean.max_chars must be >= 0"),
    "dropout above 1": (["--model.dropout", "2"], "dropout must be in [0, 1), got 2.0"),
    "negative warmup": (["--model.warmup_steps=-1"], "--model.warmup_steps and --model.weight_decay must be >= 0"),
    "negative weight decay": (["--model.weight_decay=-1"], "must be >= 0, got 100 and -1.0"),
    "beta1 above 1": (["--model.beta1", "1.5"], "--model.beta1 and --model.beta2 must be in [0, 1)"),
    "negative eps": (["--model.eps=-1"], "--model.eps must be positive, got -1.0"),
    # issue #14 item 2: refused at setup, before any step, with a batch size that fits
    "batch too large for memory": (["--data.batch_size", "10000000"], "the largest --data.batch_size that fits is"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_one_line_error_and_changes_nothing(case, workspace, capsys, monkeypatch):
    base = workspace
    monkeypatch.setenv("LIT_LLM_CACHE", str(base / "cache"))
    extra, message = BAD_INPUTS[case]
    extra = [a.format(base=base) for a in extra]
    args = extra if extra[0] in ("generate", "sweep") else fit(base, *extra)
    before = snapshot(base)
    try:
        code = main(args)
    except SystemExit as exit:  # LightningCLI's own parser errors (its message is clear)
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in err, err[-2000:]
    if not case.startswith(("unknown config key", "wrong type")):  # ours: the last line, prefixed
        assert err.strip().splitlines()[-1].startswith("lit-llm: error:") and message in errors[0]
    after = snapshot(base)
    changed = [p for p, digest in before.items() if after.get(p) != digest]
    assert not changed, changed
    # and nothing new outside the data cache: no empty version_N, no config.yaml of a run that never ran
    assert not [p for p in set(after) - set(before) if not p.startswith(str(base / "cache"))]
    assert all(p.is_file() or any(p.iterdir()) for p in (base / "whole").rglob("*")), "an empty folder was left"


@pytest.mark.slow
def test_disk_full_during_save_keeps_the_previous_checkpoint(workspace, tmp_path):
    base = workspace
    tests = str(Path(__file__).parent)  # faults.py, for the fault-injecting callback
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LIT_LLM_CACHE": str(base / "cache"),
           "PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))}
    root = tmp_path / "full"
    # a first run leaves a checkpoint; the second resumes and hits a file-size limit (EFBIG, like ENOSPC)
    subprocess.run([sys.executable, "-m", "lit_llm", *fit(base, "--trainer.default_root_dir", str(root))],
                   check=True, capture_output=True, env=env, timeout=300)
    before = snapshot(root)

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    run = subprocess.run([sys.executable, "-m", "lit_llm", *fit(base, "--trainer.default_root_dir", str(root),
                                                                  "--trainer.max_steps", "4", "--ckpt_path", "last")],
                         capture_output=True, text=True, env=env, timeout=300, preexec_fn=limit_file_size)
    assert run.returncode == 2, run.stderr[-2000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("lit-llm: error: cannot write checkpoint") and "previous checkpoint there is kept" in last
    assert "Traceback" not in run.stderr
    after = snapshot(root)
    assert all(after.get(p) == d for p, d in before.items() if "/checkpoints/" in p)
    assert not list((root / "checkpoints").glob(".*tmp*"))
    assert load(root / "checkpoints/last.ckpt")["global_step"] == 2


def test_wandb_online_without_credentials_falls_back_to_offline(workspace, tmp_path, capsys, monkeypatch):
    base = workspace
    monkeypatch.setenv("LIT_LLM_CACHE", str(base / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    root = tmp_path / "runs"
    start = time.monotonic()
    args = fit(base, "--trainer.default_root_dir", str(root))
    args[args.index("--wandb.mode") + 1] = "online"
    assert main(args) == 0
    assert time.monotonic() - start < 120
    assert "W&B online requested without credentials; logging offline" in capsys.readouterr().err
    assert list((root / "wandb").glob("offline-run-*"))


def test_secrets_never_reach_run_files(workspace, tmp_path, monkeypatch):
    base = workspace
    secret = "wandb-secret-" + "9" * 28
    monkeypatch.setenv("LIT_LLM_CACHE", str(base / "cache"))
    monkeypatch.setenv("WANDB_API_KEY", secret)
    root = tmp_path / "runs"
    args = fit(base, "--trainer.default_root_dir", str(root))
    args[args.index("--wandb.mode") + 1] = "offline"
    assert main(args) == 0
    files = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "summary.json" for p in files) and any(p.suffix == ".wandb" for p in files)
    leaked = [str(p) for p in files if secret.encode() in p.read_bytes()]
    assert not leaked, leaked


def test_time_based_checkpoints(workspace, tmp_path, monkeypatch):
    """--checkpoint.train_time_interval saves last.ckpt on a clock, with no step trigger and no validation."""
    from lit_llm.training.checkpointing import AtomicCheckpointIO, RunCheckpoint

    clock = iter(range(10**6))  # RunCheckpoint's clock only: one second per reading
    monkeypatch.setattr(RunCheckpoint, "clock", staticmethod(lambda: float(next(clock))))
    saved = []
    original = AtomicCheckpointIO.save_checkpoint
    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint",
                        lambda self, ckpt, path, storage_options=None: (saved.append((ckpt["global_step"], Path(path).name)),
                                                                original(self, ckpt, path, storage_options)))
    monkeypatch.setenv("LIT_LLM_CACHE", str(workspace / "cache"))
    args = fit(workspace, "--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.max_steps", "12",
               "--trainer.val_check_interval", "1000", "--trainer.limit_val_batches", "0",
               "--checkpoint.train_time_interval", "0:00:03")
    assert main(args) == 0
    before_end = [step for step, name in saved if name == "last.ckpt" and step < 12]
    assert len(before_end) >= 3 and len(set(before_end)) == len(before_end), saved


@pytest.mark.slow
def test_ddp_resume_is_exact(reference, tmp_path):
    """Two ranks (gloo), dropout 0.1: stop at step 6, resume to 12, equal an uninterrupted 12-step run bitwise
    (every rank's RNG state and the sampler position come back)."""
    corpus, env, _ = reference

    def ddp(root: Path, steps: int, *extra: str) -> list[str]:
        return [sys.executable, "-m", "lit_llm", "fit", "--config", str(ROOT / "configs/model/toy.yaml"),
                "--data.corpus", str(corpus), "--data.tokenizer", "char", "--data.block_size", "16",
                "--data.batch_size", "2", "--model.dropout", "0.1", "--model.lr_decay_steps", "12",
                "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
                "--trainer.max_steps", str(steps), "--trainer.val_check_interval", "6",
                "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
                "--trainer.default_root_dir", str(root), "--wandb.mode", "disabled", *extra]

    runs = [ddp(tmp_path / "whole", 12), ddp(tmp_path / "parts", 6), ddp(tmp_path / "parts", 12, "--ckpt_path", "last")]
    for cmd in runs:
        run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
    assert_same_weights(tmp_path / "whole/checkpoints/last.ckpt", tmp_path / "parts/checkpoints/last.ckpt")
    steps = [int(r["step"]) for r in csv_rows(tmp_path / "parts") if r["train/loss"]]
    assert steps == list(range(12))
    whole = [r["train/loss"] for r in csv_rows(tmp_path / "whole") if r["train/loss"]]
    assert [r["train/loss"] for r in csv_rows(tmp_path / "parts") if r["train/loss"]] == whole


def test_a_failed_fit_removes_only_the_folders_it_created(tmp_path):
    from lit_llm.training.loggers import claim_version
    from lit_llm.training.rundirs import end_run, start_run

    root = tmp_path / "runs"
    earlier = root / "wandb/offline-run-1-earlier"
    earlier.mkdir(parents=True)
    (root / "lightning_logs/version_0").mkdir(parents=True)
    (root / "lightning_logs/version_0/metrics.csv").write_text("step\n1\n")
    before = sorted(str(p) for p in root.rglob("*"))

    start_run(str(root))  # a fit that claims a version, starts W&B and fails at setup
    version = claim_version(str(root))
    (root / f"lightning_logs/version_{version}/config.yaml").write_text("x: 1\n")
    (root / "wandb/offline-run-2-failed/files").mkdir(parents=True)
    (root / "checkpoints").mkdir()
    end_run(failed=True)
    assert sorted(str(p) for p in root.rglob("*")) == before

    start_run(str(root))  # one that saved a checkpoint before failing keeps everything
    version = claim_version(str(root))
    (root / "checkpoints").mkdir()
    (root / "checkpoints/last.ckpt").write_bytes(b"x")
    end_run(failed=True)
    assert (root / f"lightning_logs/version_{version}").is_dir()

    fresh = tmp_path / "new/deeper/runs"  # folders above the root that the run created go too
    start_run(str(fresh))
    claim_version(str(fresh))
    end_run(failed=True)
    assert not (tmp_path / "new").exists()
