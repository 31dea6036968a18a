"""Sweeps: W&B semantics of grid/random, rendered commands under LightningCLI, the offline runner."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lit_llm.cli.main import main
from lit_llm.errors import LitLLMError
from lit_llm.studies.runs import latest_summary
from lit_llm.studies.sweep import SweepRunner, grid_configs, random_config, render_command, sample_value

PARAMS = {
    "model.n_embd": {"values": [64, 128]},
    "max_tokens": {"values": [1e5, 2e5]},
    "b": {"distribution": "int_uniform", "min": 1, "max": 3},
    "fixed": {"value": "x"},
}


def test_grid_is_the_sorted_cartesian_product_with_inclusive_int_uniform():
    configs = grid_configs(PARAMS)
    assert len(configs) == 2 * 2 * 3
    assert configs[0] == {"b": 1, "fixed": "x", "max_tokens": 1e5, "model.n_embd": 64}
    assert configs[1] == {"b": 1, "fixed": "x", "max_tokens": 1e5, "model.n_embd": 128}  # last key fastest
    assert configs[-1] == {"b": 3, "fixed": "x", "max_tokens": 2e5, "model.n_embd": 128}


def test_grid_matches_wandb_engine():
    engine = pytest.importorskip("sweeps")
    runs = []
    while (run := engine.next_run({"method": "grid", "parameters": PARAMS}, runs)) is not None:
        run.state = engine.RunState.finished
        runs.append(run)
    assert [{k: v["value"] for k, v in r.config.items()} for r in runs] == grid_configs(PARAMS)


def test_random_distributions_follow_wandb_definitions():
    rng = np.random.default_rng(0)
    ints = [sample_value("i", {"distribution": "int_uniform", "min": 1, "max": 3}, rng) for _ in range(3000)]
    assert set(ints) == {1, 2, 3}  # inclusive of max
    lv = np.array([sample_value("lr", {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}, rng)
                   for _ in range(3000)])
    assert lv.min() >= 1e-4 and lv.max() <= 1e-2 and abs(np.median(lv) / 1e-3 - 1) < 0.15  # geometric mean
    ln = np.array([sample_value("x", {"distribution": "log_uniform", "min": 0, "max": 2}, rng) for _ in range(3000)])
    assert ln.min() >= 1 and ln.max() <= math.e**2  # W&B: min/max are natural logs
    q = {sample_value("q", {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.25}, rng) for _ in range(500)}
    assert q <= {0.0, 0.25, 0.5, 0.75, 1.0}
    picks = [sample_value("v", {"values": ["a", "b"], "probabilities": [0.9, 0.1]}, rng) for _ in range(2000)]
    assert 0.85 < picks.count("a") / 2000 < 0.95
    assert random_config(PARAMS, 3, 7) == random_config(PARAMS, 3, 7) != random_config(PARAMS, 3, 8)


def test_random_values_match_wandb_engine_ranges():
    engine = pytest.importorskip("sweeps")
    spec = {"lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
            "x": {"distribution": "log_uniform", "min": 0, "max": 1}}
    theirs = [engine.next_run({"method": "random", "parameters": spec}, []).config for _ in range(300)]
    ours = [random_config(spec, 0, i) for i in range(300)]
    for key in spec:
        a = np.log([t[key]["value"] for t in theirs])
        b = np.log([o[key] for o in ours])
        assert abs(a.min() - b.min()) < 0.3 and abs(a.max() - b.max()) < 0.3 and abs(a.mean() - b.mean()) < 0.3


def test_rendered_command_parses_under_lightning_cli(tiny_text):
    sweep = {"command": ["${env}", "${interpreter}", "-m", "lit_llm", "fit", "${args}"]}
    params = {"model.bias": False, "model.lr": 3e-05, "model.min_lr": 1.0e-6, "data.dedup.near": True,
              "data.block_size": 32, "max_tokens": 5.0e5, "data.corpus": str(tiny_text), "data.tokenizer": "char"}
    cmd = render_command(sweep, params)
    assert cmd[:5] == ["/usr/bin/env", cmd[1], "-m", "lit_llm", "fit"] and "--model.lr=3e-05" in cmd
    from lit_llm.cli.lm import LitLLMCLI
    from lit_llm.data.datamodule import TextDataModule
    from lit_llm.training.module import LanguageModel

    cli = LitLLMCLI(LanguageModel, TextDataModule, run=False, args=cmd[5:] + ["--wandb.mode=disabled"],
                    trainer_defaults={"max_steps": 100, "logger": False})
    hp = cli.model.hparams
    assert hp.bias is False and hp.lr == 3e-05 and hp.min_lr == 1e-6 and hp.block_size == 32
    assert cli.datamodule.prepare_config.dedup.near is True
    assert cli.trainer.max_steps == math.ceil(5e5 / (16 * 32))  # steps derived from the token budget


def write_sweep(path: Path, corpus: Path, method: str = "grid") -> Path:
    cfg = path.parent / "tiny.yaml"
    cfg.write_text(f"""
model: {{n_layer: 1, n_head: 2, n_embd: 32}}
data: {{corpus: {corpus}, tokenizer: char, block_size: 16, batch_size: 4}}
trainer: {{val_check_interval: 1000, enable_progress_bar: false, enable_model_summary: false}}
wandb: {{mode: disabled}}
""")
    path.write_text(f"""
name: tiny
method: {method}
metric: {{name: val/loss, goal: minimize}}
parameters:
  model.n_embd: {{values: [16, 32]}}
  max_tokens: {{value: 1.0e+3}}
command:
  - ${{env}}
  - ${{interpreter}}
  - -m
  - lit_llm
  - fit
  - --config
  - {cfg}
  - ${{args}}
""")
    return path


@pytest.mark.slow
def test_offline_sweep_runs_and_resumes_without_rerunning(tiny_text, tmp_path, capsys):
    sweep = write_sweep(tmp_path / "tiny-sweep.yaml", tiny_text)
    out = tmp_path / "out"
    assert main(["sweep", str(sweep), "--out", str(out), "--count", "1"]) == 0  # "interrupted" after one run
    first = next((out / "run-000").glob("lightning_logs/*/summary.json"))
    stamp = first.stat().st_mtime_ns
    capsys.readouterr()
    assert main(["sweep", str(sweep), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[skip] run-000" in printed and "run-001" in printed
    assert first.stat().st_mtime_ns == stamp  # the finished run was not run again
    state = json.loads((out / "sweep-state.json").read_text())
    assert [r["status"] for r in state["runs"]] == ["finished", "finished"]
    summaries = [json.loads(next((out / r["id"]).glob("lightning_logs/*/summary.json")).read_text())
                 for r in state["runs"]]
    assert [s["config"]["model.n_embd"] for s in summaries] == [16, 32]
    assert all(s["tokens_seen"] == math.ceil(1000 / 64) * 64 for s in summaries)
    assert all(r["metric"] == pytest.approx(s["val/loss"]) for r, s in zip(state["runs"], summaries))


def test_dry_run_prints_agent_style_commands(tiny_text, tmp_path, capsys):
    sweep = write_sweep(tmp_path / "tiny-sweep.yaml", tiny_text)
    out = tmp_path / "out dir"  # a space: the printed commands must still run as one argument each
    assert main(["sweep", str(sweep), "--out", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all("--max_tokens=1000.0" in x and "--model.n_embd=" in x for x in lines)
    assert not (out / "run-000").exists()
    import shlex

    args = shlex.split(lines[0])  # as a shell splits the printed line
    assert f"--trainer.default_root_dir={out / 'run-000'}" in args
    assert any(a.startswith("--wandb.tags=[") and a.endswith("]") for a in args)  # the JSON list stays one word


def test_bayes_without_engine_is_a_clear_error(tiny_text, tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_sweeps(name, *args, **kwargs):
        if name == "sweeps":
            raise ImportError("no sweeps")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sweeps)
    sweep = write_sweep(tmp_path / "b.yaml", tiny_text, method="bayes")
    assert main(["sweep", str(sweep), "--count", "2", "--out", str(tmp_path / "o")]) == 2
    assert "pip install 'sweeps==0.2.0'" in capsys.readouterr().err


def test_bad_sweep_file_is_one_line_error(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("method: nope\nparameters: {a: {value: 1}}\n")
    assert main(["sweep", str(tmp_path / "bad.yaml")]) == 2
    assert capsys.readouterr().err.strip().startswith("lit-llm: error: sweep file")
    with pytest.raises(LitLLMError, match="values"):
        grid_configs({"lr": {"distribution": "uniform", "min": 0, "max": 1}})


def test_parallel_runs_keep_one_whole_state_file(tmp_path, capsys):
    """--parallel: runs finishing together each save the state; once they raced on one temporary file
    (FileNotFoundError at the rename)."""
    sweep = tmp_path / "par.yaml"
    sweep.write_text("name: par\nmethod: grid\nparameters: {x: {values: [%s]}}\n"
                     'command: ["${interpreter}", "-c", "pass", "${args}"]\n' % ", ".join(map(str, range(12))))
    assert SweepRunner(str(sweep), str(tmp_path / "out"), None, 6, False, 0).run() == 0
    state = json.loads((tmp_path / "out" / "sweep-state.json").read_text())
    assert [r["status"] for r in state["runs"]] == ["finished"] * 12
    assert not (tmp_path / "out" / "sweep-state.tmp").exists()


def test_latest_summary_is_the_highest_version(tmp_path):
    for version, loss in ((2, 3.0), (9, 2.0), (10, 1.0)):
        log_dir = tmp_path / "lightning_logs" / f"version_{version}"
        log_dir.mkdir(parents=True)
        (log_dir / "summary.json").write_text(json.dumps({"val/loss": loss}))
    (tmp_path / "lightning_logs" / "version_11").mkdir()
    (tmp_path / "lightning_logs" / "version_11" / "summary.json").write_text("{cut sho")  # killed mid-write
    path, summary = latest_summary(tmp_path)
    assert path.parent.name == "version_10" and summary == {"val/loss": 1.0}  # not version_9 (text order)
    assert latest_summary(tmp_path / "nothing") is None
