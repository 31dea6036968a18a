"""Text classification: accuracy on the synthetic task, logged metrics vs a hand computation, the baseline,
a frozen pretrained backbone, label mapping and errors."""

import csv
import json
from pathlib import Path

import pytest
import torch

from lit_llm.tasks.classify.data import ClassificationDataModule, label_names, split_indices
from lit_llm.tasks.classify.module import TextClassifier, pool
from lit_llm.tasks.classify.synthetic import make_sentiment, write_rows
from lit_llm.cli.main import main
from lit_llm.model.gpt import GPT, GPTConfig

CONFIG = str(Path(__file__).parents[1] / "configs/classify.yaml")


def classify_args(root: str, steps: int, *extra: str) -> list[str]:
    return ["classify", "fit", "--config", CONFIG, "--data.path", "data.csv", "--trainer.max_steps", str(steps),
            "--trainer.default_root_dir", root, "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", *extra]


def last_metrics(root: Path) -> dict:
    version = sorted(root.glob("lightning_logs/version_*"), key=lambda p: int(p.name.split("_")[1]))[-1]
    with open(version / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return {k: float(v) for row in rows for k, v in row.items() if v}


def hand_metrics(preds: list[int], labels: list[int], n_classes: int) -> tuple[float, float]:
    """Accuracy and macro-F1 (mean over classes of 2TP / (2TP + FP + FN)), by counting."""
    acc = sum(p == y for p, y in zip(preds, labels)) / len(labels)
    f1s = []
    for c in range(n_classes):
        tp = sum(p == c and y == c for p, y in zip(preds, labels))
        fp = sum(p == c and y != c for p, y in zip(preds, labels))
        fn = sum(p != c and y == c for p, y in zip(preds, labels))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return acc, sum(f1s) / n_classes


@pytest.fixture
def sentiment(tmp_path) -> Path:
    assert main(["classify", "make-data", "--out", "data.csv", "--n", "4000", "--seed", "3"]) == 0
    return tmp_path / "data.csv"


@pytest.mark.slow
def test_transformer_learns_the_task_and_logged_metrics_match_a_hand_count(sentiment, tmp_path):
    assert main(classify_args("runs", 300, "--wandb.mode", "offline")) == 0
    last = tmp_path / "runs/checkpoints/last.ckpt"
    assert main(["classify", "test", "--config", CONFIG, "--data.path", "data.csv", "--ckpt_path", str(last),
                 "--trainer.default_root_dir", "runs", "--trainer.enable_progress_bar", "false"]) == 0
    logged = last_metrics(tmp_path / "runs")
    assert logged["test/acc"] >= 0.9  # the noise (5% of labels) caps it near 0.95

    ckpt = torch.load(last, weights_only=True)
    assert ckpt["hyper_parameters"]["labels"] == ["negative", "neutral", "positive"]
    assert ckpt["lit_llm_classifier"]["labels"] == ["negative", "neutral", "positive"]
    model = TextClassifier(**{k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_")})
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    dm = ClassificationDataModule("data.csv", tokenizer="bpe", vocab_size=512, max_length=64)
    dm.load()
    assert dm.tokenizer_json() == ckpt["lit_llm_classifier"]["tokenizer_json"]  # same split, same tokenizer
    preds, labels = [], []
    with torch.no_grad():
        for i in dm.indices["test"]:  # one text at a time: no padding at all
            ids = dm.tokenizer.encode(dm.texts[i]).ids[:63] + [dm.tokenizer.token_to_id("<|endoftext|>")]
            preds.append(int(model(torch.tensor([ids]), torch.tensor([len(ids)])).argmax()))
        labels = [dm.labels.index(row["label"]) for row in list(csv.DictReader(open("data.csv")))]
        labels = [labels[i] for i in dm.indices["test"]]
    acc, f1 = hand_metrics(preds, labels, 3)
    assert logged["test/acc"] == pytest.approx(acc, abs=1e-6)
    assert logged["test/f1"] == pytest.approx(f1, abs=1e-6)
    assert acc != pytest.approx(f1, abs=1e-4)  # the two metrics do differ here

    summary = json.loads(next((tmp_path / "runs/lightning_logs").glob("version_0/summary.json")).read_text())
    assert summary["metrics"]["val/acc"] >= 0.9 and summary["config"]["model.arch"] == "transformer"
    assert list((tmp_path / "runs/wandb").glob("offline-run-*"))


def test_baseline_trails_on_negation(sentiment, tmp_path):
    assert main(classify_args("base", 200, "--model.arch", "baseline", "--model.lr", "1e-2",
                              "--wandb.mode", "disabled")) == 0
    logged = last_metrics(tmp_path / "base")
    assert 0.5 < logged["val/acc"] < 0.85  # word counting cannot flip polarity under negation


def test_frozen_pretrained_backbone(tmp_path):
    write_rows(make_sentiment(2000, seed=9), "unlabeled.jsonl")
    write_rows(make_sentiment(600, seed=4), "data.csv")
    lm = ["fit", "--config", str(Path(CONFIG).parent / "model/toy.yaml"), "--data.corpus", "unlabeled.jsonl",
          "--data.tokenizer", "bpe", "--data.vocab_size", "300", "--data.block_size", "24",
          "--data.batch_size", "8", "--trainer.max_steps", "10", "--trainer.default_root_dir", "lm",
          "--trainer.enable_progress_bar", "false", "--wandb.mode", "disabled"]
    assert main(lm) == 0
    lm_ckpt = torch.load("lm/checkpoints/last.ckpt", weights_only=True)
    args = classify_args("cls", 10, "--model.checkpoint", "lm/checkpoints/last.ckpt", "--model.freeze_backbone",
                         "true", "--wandb.mode", "disabled")
    assert main(args) == 0
    ckpt = torch.load("cls/checkpoints/last.ckpt", weights_only=True)
    hp = {k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_")}
    assert hp["vocab_size"] == lm_ckpt["hyper_parameters"]["vocab_size"] and hp["block_size"] == 24  # capped
    assert json.loads(ckpt["lit_llm_classifier"]["tokenizer_json"]) == json.loads(lm_ckpt["lit_llm"]["tokenizer_json"])
    for name, value in lm_ckpt["state_dict"].items():  # frozen: the LM's weights, unchanged
        assert torch.equal(ckpt["state_dict"][name.replace("model.", "backbone.", 1)], value), name
    assert not torch.equal(ckpt["state_dict"]["head.weight"], TextClassifier(**hp).head.weight)


def test_pooling_reads_lengths_only():
    h = torch.arange(24.0).view(2, 4, 3)
    lengths = torch.tensor([2, 4])
    assert torch.equal(pool(h, lengths, "last"), torch.stack([h[0, 1], h[1, 3]]))
    assert torch.allclose(pool(h, lengths, "mean"), torch.stack([h[0, :2].mean(0), h[1].mean(0)]))


def test_labels_and_split():
    assert label_names(["10", "2", "1"]) == ["1", "2", "10"]
    assert label_names(["pos", "neg"]) == ["neg", "pos"]
    a, b = split_indices(100, 0.1, 0.2, 1), split_indices(100, 0.1, 0.2, 1)
    assert all((a[k] == b[k]).all() for k in a) and (len(a["train"]), len(a["val"]), len(a["test"])) == (70, 10, 20)
    assert sorted(int(i) for k in a for i in a[k]) == list(range(100))
    assert not (split_indices(100, 0.1, 0.2, 2)["test"] == a["test"]).all()


def test_bad_input_is_one_line(tmp_path, capsys):
    Path("data.csv").write_text("sentence,label\nhello,a\n")
    assert main(classify_args("runs", 5, "--wandb.mode", "disabled")) == 2
    assert "--data.text_field" in capsys.readouterr().err
    assert main(classify_args("runs", 5, "--data.path", "missing.csv")) == 2
    assert "make-data" in capsys.readouterr().err


def test_a_mup_backbone_keeps_its_learning_rates_and_readout_multiplier():
    """A µP backbone (width 32 = 4x its base 8) fine-tunes as it pre-trained: its block matrices at lr / 4, the
    rest and the new head at lr, and the head reads the pooled states times the output multiplier 1/4."""
    class FakeTrainer:
        max_steps, precision_plugin = 10, None

    model = TextClassifier(labels=["neg", "pos"], vocab_size=40, block_size=16, n_layer=1, n_head=2, n_embd=32, lr=1e-3)
    torch.manual_seed(0)
    model.backbone = GPT(GPTConfig(40, 16, 1, 2, 32, parametrization="mup", mup_base_width=8))
    model._trainer = FakeTrainer()
    groups = model.configure_optimizers()["optimizer"].param_groups
    lr_of = {id(p): g["initial_lr"] for g in groups for p in g["params"]}
    for name, p in model.named_parameters():
        inside_blocks = name.startswith("backbone.h.") and p.dim() == 2
        assert lr_of[id(p)] == pytest.approx(1e-3 / 4 if inside_blocks else 1e-3), name
    model.eval()
    tokens, lengths = torch.randint(0, 40, (3, 16)), torch.tensor([16, 5, 9])
    pooled = pool(model.backbone.hidden_states(tokens), lengths, "mean")
    torch.testing.assert_close(model(tokens, lengths), pooled / 4 @ model.head.weight.T + model.head.bias)
