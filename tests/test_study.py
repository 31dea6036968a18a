"""`lit-llm scaling study`: the stages run from sweep files, the tuned lr reaches every later run, the held-out
run is the predicted one, the report is written, and a second invocation re-runs nothing. Also the pieces a
study stands on: --max_flops and the depth-sets-width shape rule (--model.aspect_ratio)."""

import json
import math

import pytest
import yaml

from lit_llm.cli.main import main
from lit_llm.model.build import params_with_head
from lit_llm.studies.runs import fit_summaries

COMMAND = ["${env}", "${interpreter}", "-m", "lit_llm", "fit", "--config", "base.yaml", "${args}"]


def sweep_file(path, name, parameters):
    path.write_text(yaml.safe_dump({"name": name, "method": "grid", "metric": {"name": "val/loss", "goal": "minimize"},
                                    "parameters": parameters, "command": COMMAND}))
    return path.name


def write_study(tmp_path, corpus):
    (tmp_path / "base.yaml").write_text(f"""
model: {{n_layer: 1, aspect_ratio: 8, n_head: 2, parametrization: mup, mup_base_width: 8, warmup_steps: 2}}
data: {{corpus: {corpus}, tokenizer: char, block_size: 16, batch_size: 4}}
trainer: {{val_check_interval: 100000, enable_progress_bar: false, enable_model_summary: false, limit_val_batches: 4}}
wandb: {{mode: disabled}}
""")
    tune = sweep_file(tmp_path / "tune.yaml", "t-tune", {"model.lr": {"values": [3e-3, 1e-2, 3e-2]},
                                                          "seed_everything": {"values": [1, 2]},
                                                          "model.n_layer": {"value": 1}, "max_tokens": {"value": 2000}})
    check = sweep_file(tmp_path / "tune-width.yaml", "t-width", {"model.lr": {"values": [3e-3, 1e-2, 3e-2]},
                                                                 "model.aspect_ratio": {"value": 16},
                                                                 "model.n_layer": {"value": 1}, "max_tokens": {"value": 2000}})
    iso = [sweep_file(tmp_path / f"iso-{i}.yaml", f"t-iso-{i}", {"model.n_layer": {"values": [1, 2, 3]},
                                                                 "max_flops": {"value": c}})
           for i, c in enumerate((2e8, 4e8))]
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({"name": "t", "parallel": 2, "tune": tune, "mup_check": check, "isoflop": iso,
                                                         "holdout": {"max_flops": 8e8, "seeds": [5, 6]}}))
    return tmp_path / "study.yaml"


@pytest.mark.slow
def test_study_runs_every_stage_and_resumes_without_rerunning(tiny_text, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the sweep commands name base.yaml relative to the working directory
    monkeypatch.setenv("LIT_LLM_CACHE", str(tmp_path / "cache"))
    study, out = write_study(tmp_path, tiny_text), tmp_path / "out"
    assert main(["scaling", "study", str(study), "--out", str(out), "--bootstrap", "20"]) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "study.json").read_text())
    fit = json.loads((out / "fit" / "fit.json").read_text())
    tune = record["tune"]
    row, wide = tune["configs"]  # the tuned depth, and the µP check at twice its width
    assert (row["n_layer"], row["width"], wide["n_layer"], wide["width"]) == (1, 8, 1, 16)
    assert row["role"] == "tune" and wide["role"] == "mup_check" and row["lr"] == wide["lr"] == [3e-3, 1e-2, 3e-2]
    assert tune["depths"]["1"]["val_loss"] == row["val_loss"]  # one width at the depth: its loss is the depth's
    assert wide["seeds"] == [1, 1, 1] and tune["best_lr_ratio_widest_to_base"] == pytest.approx(wide["best_lr"] / row["best_lr"])
    by_lr = {}  # each point is the mean over its 2 seeds
    for _, s in fit_summaries(out / "tune"):
        by_lr.setdefault(s["config"]["model.lr"], {})[s["config"]["seed_everything"]] = s["val/loss"]
    assert row["seeds"] == [2, 2, 2] and all(len(set(v.values())) == 2 for v in by_lr.values())
    assert row["val_loss"] == pytest.approx([(by_lr[lr][1] + by_lr[lr][2]) / 2 for lr in row["lr"]])
    i = row["val_loss"].index(min(row["val_loss"]))  # the grid's best, or a vertex between its neighbours
    lr = tune["rule"]["coefficient"]  # one tuned depth: one lr for every run
    assert tune["rule"]["form"] == "constant" and lr == row["best_lr"]
    assert lr == row["lr"][i] or row["lr"][max(i - 1, 0)] < lr < row["lr"][min(i + 1, 2)]
    iso_runs = [s for d in ("iso-0", "iso-1") for _, s in fit_summaries(out / d)]
    meta = next(path for path in (tmp_path / "cache").rglob("meta.json"))
    train = json.loads(meta.read_text())["splits"]["train"]["tokens"]
    assert len(iso_runs) == 6 and all(s["config"]["model.lr"] == pytest.approx(lr, rel=1e-3) for s in iso_runs)
    for s in iso_runs:  # each run spent its budget: within one step of it
        budget = 2e8 if "iso-0" in s["config"]["trainer.default_root_dir"] else 4e8
        assert budget <= s["flops"] < budget + s["flops_per_token"] * 64
        assert s["n_embd"] == 8 * s["n_layer"] and s["data_passes"] == pytest.approx(s["tokens_seen"] / train, rel=1e-3)
    p = fit["prediction"]
    holdout = [s for _, s in fit_summaries(out / "holdout")]
    losses = sorted(s["val/loss"] for s in holdout)  # one run per seed, the seeds the study file names
    assert sorted(s["config"]["seed_everything"] for s in holdout) == [5, 6] and losses[0] != losses[1]
    assert all(s["n_layer"] == p["n_layer"] for s in holdout) and sorted(p["measured_losses"]) == pytest.approx(losses)
    assert p["measured_loss"] == pytest.approx(sum(losses) / 2)
    assert p["measured_std"] == pytest.approx(abs(losses[1] - losses[0]) / math.sqrt(2))
    assert p["relative_error"] == pytest.approx(p["measured_loss"] / p["loss"] - 1)
    assert all(c["data_passes"] == pytest.approx(c["D"] / train, rel=1e-3) for c in p["candidates"])
    one_pass = [c for c in p["candidates"] if c["data_passes"] <= 1] or p["candidates"]
    chosen = (min(one_pass, key=lambda c: abs(math.log(c["N"] / p["N_opt_approach2"]))) if p["size_from"] == "approach 2"
              else min(one_pass, key=lambda c: c["approach 3"]))
    assert chosen["n_layer"] == p["n_layer"] and sorted(c["n_layer"] for c in p["candidates"]) == [1, 2, 3]
    assert fit["backtest"] is None and p["loss_from"] == "approach 3" and p["loss"] == p["loss_approach3"]  # 2 budgets
    assert p["replay_rms"] is None and "replays one budget ahead erred" not in printed  # no replay: no precision claim
    assert {"runs", "chinchilla", "compute_optimal", "L_N", "L_D", "isoflop", "approach1", "prediction"} <= set(fit)
    report = (out / "report.md").read_text()
    assert f"{p['measured_loss']:.4f}" in report and "approach 3" in report and "isoFLOP C =" in report
    assert (out / "fit" / "isoflop.png").stat().st_size > 10_000 and "held-out C = 8e+08" in printed
    table = (out / "fit" / "runs.csv").read_text().splitlines()  # the points again, for `scaling fit runs.csv`
    assert len(table) == 1 + 6 + 2 and table[-1].startswith(f"holdout,{p['n_layer']},")
    assert main(["report", str(out), "--out", str(tmp_path / "html")]) == 0  # the HTML report shows the study
    page = (tmp_path / "html" / "report.html").read_text()
    assert "Held-out prediction" in page and f"measured {p['measured_loss']:.4f} (mean of 2 seeds" in page
    stamps = {str(path): path.stat().st_mtime_ns for path in out.rglob("summary.json")}
    assert main(["scaling", "study", str(study), "--out", str(out), "--bootstrap", "20"]) == 0
    assert capsys.readouterr().out.count("[skip]") == 6 + 3 + 6 + 2
    first = json.loads((out / "study.json").read_text())["invocations"]
    assert len(first) == 2 and f"of the one finished {first[0]['finished']}: " in (out / "report.md").read_text()
    assert {str(path): path.stat().st_mtime_ns for path in out.rglob("summary.json")} == stamps


def summary(n_layer, width, lr, loss):
    return {"n_layer": n_layer, "n_embd": width, "params_with_head": 1000 * width, "val/loss": loss,
            "config": {"model.lr": lr}}


def test_the_lr_rule_is_a_power_law_in_depth_through_each_depths_best_and_stays_in_the_grid():
    from lit_llm.studies.study import lr_rule, rule_lr, tuning_rows

    grid = [2.5e-3, 5e-3, 1e-2, 2e-2, 4e-2, 8e-2]
    best = {4: 4e-2, 16: 1e-2}  # the losses are parabolas in log lr with these vertices: lr(L) = 0.16 / L
    runs = [("tune", summary(L, 8 * L, lr, 2 + (math.log(lr / b)) ** 2 + seed)) for L, b in best.items()
            for lr in grid for seed in (0.0, 0.1)]
    runs += [("mup_check", summary(4, 128, lr, 1.5 + (math.log(lr / 3e-2)) ** 2)) for lr in grid]
    rows = tuning_rows(runs)
    four = rows[4, 32]
    assert four["seeds"] == [2] * 6 and four["val_loss"][0] == pytest.approx(2.05 + math.log(2.5e-3 / 4e-2) ** 2)
    assert four["best_lr"] == pytest.approx(4e-2) and rows[4, 128]["role"] == "mup_check" and rows[16, 128]["role"] == "tune"
    depths, rule = lr_rule(rows)  # the µP check's width is not part of the rule
    assert sorted(depths) == [4, 16] and depths[16]["best_lr"] == pytest.approx(1e-2)
    assert rule["exponent"] == pytest.approx(-1) and rule["coefficient"] == pytest.approx(0.16)
    assert rule_lr(rule, 8) == pytest.approx(2e-2) and rule["within"] == [2.5e-3, 8e-2]
    assert rule_lr(rule, 1) == 8e-2 and rule_lr(rule, 128) == 2.5e-3  # held inside the grid tried


def test_a_depth_tuned_at_one_lr_only_is_a_one_line_error():
    from lit_llm.errors import LitLLMError
    from lit_llm.studies.study import tuning_rows

    with pytest.raises(LitLLMError, match="2\\+ learning rates for n_layer 2, width 16"):
        tuning_rows([("tune", summary(2, 16, 1e-2, 2.0)), ("tune", summary(2, 16, 1e-2, 2.1))])


def test_a_sweep_without_n_layer_under_a_depth_rule_is_an_error_before_any_run(tmp_path):
    from lit_llm.errors import LitLLMError
    from lit_llm.studies.study import Study

    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"name": "t", "method": "grid", "parameters": {
        "max_flops": {"value": 1e9}}, "command": COMMAND}))
    (tmp_path / "study.yaml").write_text("tune: t.yaml\nisoflop: [t.yaml]\nholdout: {max_flops: 2e9}\n")
    study = Study(str(tmp_path / "study.yaml"), str(tmp_path / "out"))
    study.rule = {"form": "c * n_layer^x", "coefficient": 0.08, "exponent": -0.5, "within": [1e-3, 1e-1]}
    assert study.lr_args({"model.n_layer": 4}) == ["--model.lr=0.04"]
    with pytest.raises(LitLLMError, match="need model.n_layer among their parameters"):  # the CLI prints it as one line
        study.sweeps(["t.yaml"], study.lr_args)
    assert not list((tmp_path / "out").rglob("output.log"))  # nothing ran


@pytest.mark.parametrize("holdout, message", [("", "needs `holdout: {max_flops: C}`"),
                                              ("holdout: {max_flops: 1e9, seeds: 3}", "must be a list of distinct"),
                                              ("holdout: {max_flops: 1e9, seeds: [1, 1]}", "must be a list of distinct")])
def test_a_study_file_without_a_valid_holdout_is_a_one_line_error(tmp_path, capsys, holdout, message):
    (tmp_path / "study.yaml").write_text(f"tune: t.yaml\nisoflop: [i.yaml]\n{holdout}\n")
    assert main(["scaling", "study", str(tmp_path / "study.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_max_flops_sets_the_steps_from_the_models_flops_per_token(tiny_text):
    from lit_llm.cli.lm import LitLLMCLI
    from lit_llm.data.datamodule import TextDataModule
    from lit_llm.training.module import LanguageModel

    args = ["--data.corpus", str(tiny_text), "--data.tokenizer", "char", "--data.block_size", "16",
            "--data.batch_size", "4", "--model.n_layer", "3", "--model.aspect_ratio", "8", "--model.n_head", "2",
            "--max_flops", "1e9", "--wandb.mode=disabled"]
    cli = LitLLMCLI(LanguageModel, TextDataModule, run=False, args=args, trainer_defaults={"logger": False})
    model = cli.model
    assert model.config.n_embd == 24 and model.hparams.aspect_ratio == 8  # width = aspect_ratio x depth
    cfg = model.config
    n_matmul = model.num_params(non_embedding=True) + cfg.vocab_size * cfg.n_embd  # the tied head
    assert params_with_head(model.network(), cfg) == n_matmul
    fpt = 6 * n_matmul + 12 * cfg.n_layer * cfg.n_embd * 16
    assert model.flops_per_token() == fpt
    cli.after_trainer(cli.trainer)
    assert cli.trainer.max_steps == math.ceil(1e9 / fpt / (4 * 16))


def test_warmup_steps_per_layer_sets_the_schedules_warmup_from_the_depth():
    import lightning as L

    from lit_llm.errors import LitLLMError
    from lit_llm.training.module import LanguageModel

    def model(n_layer: int, per_layer: int) -> LanguageModel:
        return LanguageModel(vocab_size=32, block_size=8, n_layer=n_layer, n_head=2, n_embd=16, lr=1.0,
                             warmup_steps=7, warmup_steps_per_layer=per_layer)

    assert model(3, 0).warmup_steps == 7 and model(3, 10).warmup_steps == 30 and model(1, 10).warmup_steps == 10
    m = model(3, 10)
    m.configure_model()
    trainer = L.Trainer(max_steps=300, logger=False, enable_checkpointing=False, accelerator="cpu")
    trainer.strategy.connect(m)
    m.trainer = trainer
    scheduler = m.configure_optimizers()["lr_scheduler"]["scheduler"]  # the module's own schedule
    lrs = [scheduler.lr_lambdas[0](step) for step in (0, 29, 30)]
    assert lrs == [1 / 31, 30 / 31, 1.0]  # linear to the peak over 30 steps, not 7
    with pytest.raises(LitLLMError, match="warmup_steps_per_layer must be >= 0"):
        model(3, -1)


@pytest.mark.parametrize("extra, message", [(["--max_flops", "-1"], "--max_flops must be positive"),
                                             (["--model.warmup_steps_per_layer", "-1"], "warmup_steps_per_layer must be >= 0"),
                                             (["--max_flops", "1e9", "--max_tokens", "1e4"], "not given with --max_tokens"),
                                             (["--model.aspect_ratio", "-2"], "--model.aspect_ratio must be >= 0")])
def test_bad_budget_and_shape_options_are_one_line_errors(tiny_text, tmp_path, capsys, extra, message):
    args = ["fit", "--data.corpus", str(tiny_text), "--data.tokenizer", "char", "--data.block_size", "16",
            "--model.n_layer", "1", "--model.n_embd", "16", "--trainer.default_root_dir", str(tmp_path),
            "--wandb.mode", "disabled", *extra]
    assert main(args) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and not any("Traceback" in line for line in err)


@pytest.mark.parametrize("study", ["scaling-cpu", "scaling-gpu"])
def test_the_shipped_study_files_load_and_name_existing_configs(study):
    from pathlib import Path

    from lit_llm.studies.study import load_study
    from lit_llm.studies.sweep import grid_configs, load_sweep

    root = Path(__file__).resolve().parents[1]
    spec = load_study(root / "sweeps" / study / "study.yaml")
    budgets = []
    for name in spec["isoflop"]:
        sweep = load_sweep(root / "sweeps" / study / name)
        config = sweep["command"][sweep["command"].index("--config") + 1]
        assert (root / config).exists() and len(grid_configs(sweep["parameters"])) >= 3
        budgets.append(sweep["parameters"]["max_flops"]["value"])
    assert budgets == sorted(budgets) and spec["holdout"]["max_flops"] > budgets[-1]  # held out: above them all


@pytest.mark.parametrize("replay_rms, loss_from", [({"approach 2": 0.033, "approach 3": 0.088}, "approach 2"),
                                                   ({"approach 2": 0.05, "approach 3": 0.02}, "approach 3")])
def test_the_held_out_size_is_approach_2s_within_one_pass_and_its_loss_from_the_better_replays(tmp_path, replay_rms,
                                                                                                 loss_from):
    """Approach 2's N_opt at the held-out budget is 25k: n_layer 3 (28k) is nearest but would repeat the data, so
    n_layer 4 (59k) runs; its loss comes from the approach whose replays one budget ahead erred less (root mean
    square), and that error is the prediction's expected precision."""
    from lit_llm.studies.isoflop import frontier_loss
    from lit_llm.studies.study import Study

    sweep_file(tmp_path / "t.yaml", "t", {"model.n_layer": {"values": [2, 3, 4, 5]}})
    (tmp_path / "study.yaml").write_text("tune: t.yaml\nisoflop: [t.yaml]\nholdout: {max_flops: 4e12}\n")
    study = Study(str(tmp_path / "study.yaml"), str(tmp_path / "out"))
    shapes = [{"n_layer": L, "N": n, "flops_per_token": f} for L, n, f in
              [(2, 10736, 1.8e5), (3, 27936, 2.2e5), (4, 59168, 4.5e5), (5, 109040, 8.1e5)]]
    iso = {"a": 0.5, "N_opt_coefficient": 25e3 / 4e12 ** 0.5, "loss_opt_exponent": -0.1, "loss_opt_coefficient": 30.0,
           "curvature": 0.2}
    law = {"E": 1.3, "A": 1.5e3, "alpha": 0.9, "B": 2.6e3, "beta": 0.6}
    fit = {"chinchilla": law, "isoflop": iso, "backtest": {"rolling_rms": replay_rms}}
    p = study.predict(fit, {"shapes": shapes}, train_tokens=12e6)
    assert [c["n_layer"] for c in p["candidates"] if c["data_passes"] > 1] == [2, 3]  # 4e12 / 2.2e5 = 18M tokens
    assert (p["n_layer"], p["size_from"], p["loss_from"]) == (4, "approach 2", loss_from)
    assert p["replay_rms"] == replay_rms[loss_from]
    assert p["data_passes"] == pytest.approx(4e12 / 4.5e5 / 12e6)
    two = frontier_loss(iso, 4e12, 59168)
    three = 1.3 + 1.5e3 / 59168 ** 0.9 + 2.6e3 / (4e12 / 4.5e5) ** 0.6
    assert (p["loss_approach2"], p["loss_approach3"]) == (pytest.approx(two), pytest.approx(three))
    assert p["loss"] == pytest.approx(two if loss_from == "approach 2" else three)
