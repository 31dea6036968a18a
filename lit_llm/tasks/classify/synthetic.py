"""A small synthetic sentiment task that word counting cannot solve: negation flips the polarity.

A review has a main clause "<subject> was [negation] [intensifier] <adjective>" and, half of the time, a
distractor clause with a neutral adjective, before or after it. The label is positive or negative from the
adjective's polarity, flipped by a negation ("not", "never", "hardly"), and neutral for a neutral adjective
(negated or not). With probability `noise` the label is replaced by another one drawn at random, so the
best achievable accuracy is about 1 - noise. A bag of words cannot represent the flip (it is an XOR of
"not" and the adjective), so the embedding-mean baseline stays well below a Transformer.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from lit_llm.errors import LitLLMError

LABELS = ("negative", "neutral", "positive")
SUBJECTS = ["the movie", "this film", "the plot", "the acting", "the soundtrack", "the ending", "the cast",
            "the script", "the story", "the sequel", "the dialogue", "the camera work"]
POSITIVE = ["good", "great", "excellent", "wonderful", "brilliant", "enjoyable", "superb", "delightful", "fun"]
NEGATIVE = ["bad", "awful", "terrible", "boring", "dreadful", "poor", "dull", "horrible", "weak"]
NEUTRAL = ["long", "recent", "french", "animated", "short", "loud", "new", "colourful", "quiet"]
NEGATIONS = ["not", "never", "hardly"]
INTENSIFIERS = ["very", "really", "quite", "so", "rather"]
OPENERS = ["i think", "honestly,", "to be fair,", "in my opinion", "frankly,", "overall", "well,"]


def review(rng: random.Random, negation_prob: float) -> tuple[str, str]:
    """One text and its noise-free label."""
    kind = rng.choice(LABELS)
    adjective = rng.choice({"negative": NEGATIVE, "neutral": NEUTRAL, "positive": POSITIVE}[kind])
    negated = rng.random() < negation_prob
    words = [rng.choice(SUBJECTS), "was"]
    if negated:
        words.append(rng.choice(NEGATIONS))
    if rng.random() < 0.4:
        words.append(rng.choice(INTENSIFIERS))
    clause = " ".join(words + [adjective])
    if rng.random() < 0.5:
        distractor = f"{rng.choice(SUBJECTS)} was {rng.choice(NEUTRAL)}"
        clause = f"{clause} and {distractor}" if rng.random() < 0.5 else f"{distractor}, but {clause}"
    if rng.random() < 0.4:
        clause = f"{rng.choice(OPENERS)} {clause}"
    if kind != "neutral" and negated:
        kind = "positive" if kind == "negative" else "negative"
    return clause, kind


def make_sentiment(n: int, seed: int = 0, noise: float = 0.05, negation_prob: float = 0.35) -> list[dict]:
    """n rows {"text", "label"}; a share `noise` of the labels replaced by a different random label."""
    if n <= 0 or not 0 <= noise < 1 or not 0 <= negation_prob <= 1:
        raise LitLLMError("make-data needs --n > 0, 0 <= --noise < 1 and 0 <= --negation_prob <= 1")
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        text, label = review(rng, negation_prob)
        if rng.random() < noise:
            label = rng.choice([x for x in LABELS if x != label])
        rows.append({"text": text, "label": label})
    return rows


def write_rows(rows: list[dict], out: str | Path) -> Path:
    """CSV or JSONL by the file's suffix; an existing file is never overwritten."""
    out = Path(out)
    if out.exists():
        raise LitLLMError(f"{out} exists; choose another --out (it is never overwritten)")
    if out.suffix not in (".csv", ".jsonl"):
        raise LitLLMError(f"--out must end in .csv or .jsonl, got {out.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        if out.suffix == ".csv":
            writer = csv.DictWriter(f, fieldnames=["text", "label"])
            writer.writeheader()
            writer.writerows(rows)
        else:
            f.writelines(json.dumps(row) + "\n" for row in rows)
    tmp.rename(out)
    return out


def make_data_main(args: list[str]) -> None:
    """lit-llm classify make-data --out FILE [--n N --seed S --noise P --negation_prob P]"""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(prog="lit-llm classify make-data", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=str, required=True, help="a .csv or .jsonl file (text, label)")
    parser.add_argument("--n", type=int, default=4000, help="number of rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.05, help="share of labels replaced by another label")
    parser.add_argument("--negation_prob", type=float, default=0.35, help="share of negated main clauses")
    cfg = parser.parse_args(args)
    rows = make_sentiment(cfg.n, cfg.seed, cfg.noise, cfg.negation_prob)
    path = write_rows(rows, cfg.out)
    counts = {label: sum(r["label"] == label for r in rows) for label in LABELS}
    print(f"wrote {len(rows)} rows to {path} ({', '.join(f'{k}: {v}' for k, v in counts.items())})")
