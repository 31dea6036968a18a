"""µP (--model.parametrization mup): equal to the standard parametrization at the base width, the per-group
learning rates, init / attention scale / output multiplier against explicit computations, the coordinate
check (activations stay flat as width grows under µP, drift under the standard one), and exact HF export
and generation of a µP model."""

import math

import pytest
import torch
import torch.nn.functional as F

from lit_llm.checkpoints import load_model
from lit_llm.cli.main import main
from lit_llm.errors import LitLLMError
from lit_llm.model.gpt import GPT, GPTConfig
from lit_llm.model.mup import lr_multiplier
from lit_llm.training.module import LanguageModel
from lit_llm.training.optim import lr_at

V, T = 65, 32


class FakeTrainer:
    max_steps = 100
    precision_plugin = None  # no GradScaler: the fused AdamW


def lm(n_embd: int, parametrization: str = "standard", base: int = 0, seed: int = 0, **kw) -> LanguageModel:
    torch.manual_seed(seed)
    model = LanguageModel(vocab_size=V, block_size=T, n_layer=2, n_head=4, n_embd=n_embd,
                          parametrization=parametrization, mup_base_width=base, **kw)
    model.configure_model()
    model._trainer = FakeTrainer()  # configure_optimizers reads max_steps for the schedule
    return model


def batch(seed: int = 1, rows: int = 8) -> torch.Tensor:
    return torch.randint(0, V, (rows, T + 1), generator=torch.Generator().manual_seed(seed))


def train(model: LanguageModel, steps: int, record=None) -> list[float]:
    """Plain steps of the module's own optimizer and schedule on one batch; record(step) after each forward."""
    opt = model.configure_optimizers()
    optimizer, schedule = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
    data, losses = batch(), []
    for step in range(steps):
        logits = model.model(data[:, :-1])
        if record is not None:
            record(step)
        loss = F.cross_entropy(logits.flatten(0, 1), data[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return losses


# --- at the base width µP is the standard parametrization ----------------------------------------------
def test_mup_at_base_width_is_standard_exactly():
    sp, mup = lm(64), lm(64, "mup", base=64)
    assert mup.config.parametrization == "mup" and sp.config.parametrization == "standard"
    sd_sp, sd_mup = sp.model.state_dict(), mup.model.state_dict()
    assert sd_sp.keys() == sd_mup.keys() and all(torch.equal(sd_sp[k], sd_mup[k]) for k in sd_sp)
    ids = batch()[:, :-1]
    with torch.no_grad():
        assert torch.equal(sp.model(ids), mup.model(ids))
    kw = dict(lr=3e-3, warmup_steps=2)
    sp, mup = lm(64, **kw), lm(64, "mup", base=64, **kw)
    assert train(sp, 4) == train(mup, 4)
    assert all(torch.equal(a, b) for a, b in zip(sp.parameters(), mup.parameters()))


def test_mup_needs_a_base_width_and_standard_ignores_it():
    with pytest.raises(LitLLMError, match="mup_base_width"):
        LanguageModel(vocab_size=V, block_size=T, n_embd=64, parametrization="mup")
    cfg = GPTConfig(vocab_size=V, block_size=T, n_layer=1, n_head=2, n_embd=32, mup_base_width=16)
    assert cfg.mup_base_width == 0 and cfg == GPTConfig(vocab_size=V, block_size=T, n_layer=1, n_head=2, n_embd=32)


# --- the rules, each against an explicit computation ----------------------------------------------------
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\(\)`")
def test_per_group_learning_rates_and_their_schedule():
    lr, wd, m = 2e-3, 0.1, 4
    model = lm(32 * m, "mup", base=32, lr=lr, weight_decay=wd, warmup_steps=3)
    opt = model.configure_optimizers()
    optimizer, schedule = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
    assert optimizer.param_groups[0]["initial_lr"] == lr  # the group the "lr" metric shows: the base lr
    expected = {}  # name -> (lr, weight decay), from µP's table
    for name, p in model.named_parameters():
        if p.dim() < 2:
            expected[name] = (lr, 0.0)  # norms and biases: base lr, no decay
        elif name in ("model.wte.weight", "model.wpe.weight"):  # embeddings (the head is tied to wte)
            expected[name] = (lr, wd)
        else:
            assert name.startswith("model.h.")  # matrices inside the blocks: lr / m, decay step lr * wd kept
            expected[name] = (lr / m, wd * m)
    names = {id(p): n for n, p in model.named_parameters()}
    seen = {names[id(p)]: (g["initial_lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}
    assert seen.keys() == expected.keys()
    assert all(seen[n] == pytest.approx(expected[n], rel=1e-12) for n in expected)
    assert len({(round(x[0], 12), x[1]) for x in expected.values()}) == len(optimizer.param_groups) == 3
    # by name alone: wrapped (FSDP flattens shards to 1-D) or pruned (weight_orig) block matrices too
    for name, mult in (("model.h.1._fsdp_wrapped_module.mlp.c_gate.weight", 1 / m),
                       ("h.0.attn.c_proj.weight_orig", 1 / m), ("model.h.0.attn.c_attn.bias", 1.0),
                       ("model.lm_head.weight", 1.0), ("model.h.0.ln_1.weight", 1.0)):
        assert lr_multiplier(name, torch.zeros(8), model.config) == mult, name
    for step in range(8):  # warmup then cosine multiply each group's own lr
        factor = lr_at(step, lr, lr / 10, 3, FakeTrainer.max_steps) / lr
        for g in optimizer.param_groups:
            assert g["lr"] == pytest.approx(expected[names[id(g["params"][0])]][0] * factor, rel=1e-9)
        schedule.step()


def test_init_attention_scale_and_output_multiplier():
    m, base, n_head = 4, 32, 4
    sp, mup = lm(base * m, seed=3).model, lm(base * m, "mup", base=base, seed=3).model
    for (name, a), b in zip(sp.state_dict().items(), mup.state_dict().values()):
        hidden_matrix = name.startswith("h.") and a.dim() == 2
        assert torch.equal(b, a / math.sqrt(m) if hidden_matrix else a), name  # the same draws, scaled
    # attention: softmax(q k^T * sqrt(base / n_head) / head_size), written out
    attn, hs = mup.h[0].attn, base * m // n_head
    x = torch.randn(2, 10, base * m, generator=torch.Generator().manual_seed(0))
    q, k, v = (t.view(2, 10, n_head, hs).transpose(1, 2) for t in attn.c_attn(x).split(base * m, dim=2))
    scores = (q @ k.transpose(-1, -2)) * (math.sqrt(base / n_head) / hs)
    scores = scores.masked_fill(torch.ones(10, 10, dtype=torch.bool).triu(1), float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 10, base * m)
    with torch.no_grad():
        assert torch.allclose(attn(x, None), attn.c_proj(y), atol=1e-6)
        ids = batch()[:, :-1]
        expected = mup.lm_head(mup.hidden_states(ids) / m)[..., :V]  # output multiplier 1/m
        assert torch.allclose(mup(ids), expected, atol=1e-6)


# --- the coordinate check ------------------------------------------------------------------------------
WIDTHS = (32, 256)  # base width and 8x
STEPS = 5


def coordinates(width: int, parametrization: str) -> list[dict[str, float]]:
    """Mean |activation| of the embeddings, each block's output and the logits at each of STEPS steps of
    Adam at a fixed lr (no warmup, no decay), from base width 32."""
    model = lm(width, parametrization, base=32, lr=1e-2, warmup_steps=0, weight_decay=0.0)
    gpt, current, rows = model.model, {}, []
    gpt.drop.register_forward_hook(lambda mod, i, out: current.__setitem__("embeddings", out.abs().mean().item()))
    for j, block in enumerate(gpt.h):
        block.register_forward_hook(lambda mod, i, out, j=j: current.__setitem__(f"block {j}", out.abs().mean().item()))
    gpt.register_forward_hook(lambda mod, i, out: current.__setitem__("logits", out.abs().mean().item()))
    # from the first update on: at init µP's logits shrink like 1/sqrt(width) (weights not yet aligned)
    train(model, STEPS + 1, record=lambda step: rows.append(dict(current)) if step else None)
    return rows  # row s: the forward pass after s + 1 updates


def width_ratios(parametrization: str) -> dict[str, list[float]]:
    """Per activation and step: its mean |value| at the widest model over the narrowest."""
    narrow, wide = (coordinates(w, parametrization) for w in WIDTHS)
    return {key: [wide[s][key] / narrow[s][key] for s in range(STEPS)] for key in narrow[0]}


def test_coordinate_check_flat_under_mup_drifting_under_standard():
    """Measured (8x width, 5 steps at lr 1e-2): µP ratios 0.64-1.01; standard: blocks 5.5-40x, logits 2.7-4.3.
    The thresholds sit between: µP within a factor 2 everywhere, standard blocks > 4x and logits > 2x."""
    mup, sp = width_ratios("mup"), width_ratios("standard")
    for key, ratios in mup.items():
        assert all(0.5 < r < 2.0 for r in ratios), (key, ratios)
    blocks = [r for key, ratios in sp.items() if key.startswith("block") for r in ratios]
    assert min(blocks) > 4.0, sp
    assert min(sp["logits"]) > 2.0, sp
    assert max(blocks) > 5 * max(r for key, ratios in mup.items() for r in ratios)  # the contrast, clearly


# --- export and generation ----------------------------------------------------------------------------
transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("mode", ["gpt2", "llama"])
def test_mup_model_exports_to_hf_exactly_and_generates(tmp_path, capsys, mode):
    from test_convert import TEXT, TOL, hf_logits, our_checkpoint, random_ids, run
    from lit_llm.data.tokenizer import char_tokenizer

    tok = char_tokenizer([TEXT])
    modern = dict(norm="rmsnorm", pos="rope", mlp="swiglu", bias=False, tie_embeddings=False) if mode == "llama" else {}
    cfg = GPTConfig(vocab_size=tok.get_vocab_size(), block_size=32, n_layer=2, n_head=4, n_embd=64,
                    parametrization="mup", mup_base_width=16, **modern)
    ours = our_checkpoint(tmp_path / "mup.ckpt", cfg, tok)
    standard = GPT(GPTConfig(**{**cfg.__dict__, "parametrization": "standard"})).eval()
    standard.load_state_dict(ours.state_dict())
    ids = random_ids(cfg.vocab_size)
    with torch.no_grad():
        expected = ours(ids)
        assert (standard(ids) - expected).abs().max() > 100 * TOL  # µP's scales matter for these weights
    code, out = run(capsys, "export-hf", tmp_path / "mup.ckpt", "--out", tmp_path / "hf")
    assert code == 0, out
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert (hf_logits(hf, ids) - expected).abs().max() < TOL
    prompt = torch.tensor([tok.encode("Before we").ids])
    mine = ours.generate(prompt, 20, temperature=0)
    assert mine.tolist() == ours.generate(prompt, 20, temperature=0, use_cache=False).tolist()
    assert hf.generate(prompt, max_new_tokens=20, do_sample=False, pad_token_id=0).tolist() == mine.tolist()
    model, _ = load_model(tmp_path / "mup.ckpt")  # as `lit-llm generate` loads it: µP carried by the file
    assert model.config == cfg
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(tmp_path / "mup.ckpt"), "--prompt", "Before we",
                 "--max_new_tokens", "20", "--temperature", "0"]) == 0
    assert capsys.readouterr().out.strip() == tok.decode(mine[0].tolist())
