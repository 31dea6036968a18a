import math

import pytest
import torch
import torch.nn.functional as F

from lit_llm.model.gpt import GPT, GPTConfig, sample_next

MODES = {
    "gpt2": dict(norm="layernorm", pos="learned", mlp="gelu", bias=True, tie_embeddings=True),
    "modern": dict(norm="rmsnorm", pos="rope", mlp="swiglu", bias=False, tie_embeddings=False),
}


def tiny(mode: str, **kw) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=97, block_size=16, n_layer=2, n_head=4, n_embd=32, **{**MODES[mode], **kw})
    return GPT(cfg).eval()


@pytest.mark.parametrize("mode", MODES)
def test_causal_masking(mode):
    model = tiny(mode)
    idx = torch.randint(0, 97, (2, 16))
    changed = idx.clone()
    changed[:, 9] = (changed[:, 9] + 1) % 97
    a, b = model(idx), model(changed)
    assert torch.allclose(a[:, :9], b[:, :9], atol=1e-6)  # positions before the change are untouched
    assert not torch.allclose(a[:, 9:], b[:, 9:], atol=1e-4)  # and the change is seen from there on


@pytest.mark.parametrize("mode", MODES)
def test_loss_at_init_is_log_vocab(mode):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=500, block_size=32, n_layer=2, n_head=2, n_embd=64, **MODES[mode]))
    idx = torch.randint(0, 500, (8, 32))
    loss = F.cross_entropy(model(idx).flatten(0, 1), torch.randint(0, 500, (8 * 32,)))
    assert abs(loss.item() - math.log(500)) < 0.1


@pytest.mark.parametrize("mode", MODES)
def test_kv_cache_generation_equals_uncached(mode):
    model = tiny(mode)
    prompt = torch.randint(0, 97, (2, 5))
    # 30 new tokens: the context overflows block_size 16, so the sliding window is exercised too
    cached = model.generate(prompt, 30, temperature=0, use_cache=True)
    plain = model.generate(prompt, 30, temperature=0, use_cache=False)
    assert torch.equal(cached, plain)


def test_kv_cache_logits_match_full_forward():
    model = tiny("modern")
    from lit_llm.model.gpt import KVCache

    idx = torch.randint(0, 97, (1, 12))
    caches = [KVCache(1, model.config, idx.device, torch.float32) for _ in model.h]
    steps = [model(idx[:, :6], caches, 0)] + [model(idx[:, t : t + 1], caches, t) for t in range(6, 12)]
    assert torch.allclose(torch.cat(steps, dim=1), model(idx), atol=1e-5)


def test_param_counts_and_flops():
    model = tiny("gpt2")
    c = model.config
    total = sum(p.numel() for p in model.parameters()) - model.padding_params()  # padding rows are not parameters
    assert model.num_params(non_embedding=False) == total
    assert model.num_params() == total - c.vocab_size * c.n_embd - c.block_size * c.n_embd
    per_layer = 12 * c.n_embd**2 + 13 * c.n_embd  # attention 4C^2+4C, MLP 8C^2+5C, two LayerNorms 4C
    assert model.num_params() == c.n_layer * per_layer + 2 * c.n_embd  # + final LayerNorm
    expected = 6 * (total - c.block_size * c.n_embd) + 12 * c.n_layer * c.n_embd * c.block_size
    assert model.flops_per_token() == expected


def test_modern_mode_matches_gpt2_parameter_count():
    # the shakespeare-char pair: same size within 5%
    base = GPT(GPTConfig(vocab_size=67, block_size=64, n_layer=4, n_head=4, n_embd=128, **MODES["gpt2"]))
    modern = GPT(GPTConfig(vocab_size=67, block_size=64, n_layer=4, n_head=4, n_embd=128,
                           **{**MODES["modern"], "tie_embeddings": True}))
    ratio = modern.num_params(False) / base.num_params(False)
    assert 0.95 <= ratio <= 1.05


def test_gpt2_mode_uses_tanh_gelu():
    model = tiny("gpt2")
    x = torch.randn(3, model.config.n_embd)
    mlp = model.h[0].mlp
    expected = mlp.c_proj(F.gelu(mlp.c_fc(x), approximate="tanh"))
    assert torch.allclose(mlp(x), expected)


def test_gelu_exact_is_the_erf_gelu_at_the_same_width():
    model = tiny("gpt2", mlp="gelu_exact")
    x = torch.randn(3, model.config.n_embd)
    mlp = model.h[0].mlp
    assert model.config.n_ff == 4 * model.config.n_embd
    assert torch.equal(mlp(x), mlp.c_proj(torch.nn.GELU()(mlp.c_fc(x))))


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="positive"):
        GPTConfig(n_layer=0)


def test_top_k_and_top_p_restrict_sampling():
    logits = torch.tensor([[4.0, 3.0, 2.0, -10.0, -10.0]])
    g = torch.Generator().manual_seed(0)
    picks = {sample_next(logits, 1.0, top_k=2, generator=g).item() for _ in range(200)}
    assert picks == {0, 1}
    # probabilities ~ [0.665, 0.245, 0.09, ...]: top_p 0.8 keeps the first two only
    picks = {sample_next(logits, 1.0, top_p=0.8, generator=g).item() for _ in range(200)}
    assert picks == {0, 1}
    assert sample_next(logits, 0.0).item() == 0


@pytest.mark.parametrize("mode", MODES)
def test_meta_device_build_materialises_with_gpt2_init(mode):
    """What FSDP does with a model built on the meta device: to_empty, then reset_parameters on every
    module, parents before children. The result must be GPT-2's init, not PyTorch's defaults."""
    cfg = GPTConfig(vocab_size=97, block_size=16, n_layer=4, n_head=4, n_embd=256, **MODES[mode])
    with torch.device("meta"):
        model = GPT(cfg)
    assert all(p.is_meta for p in model.parameters())
    model.to_empty(device="cpu")
    for module in model.modules():  # breadth-first from the root is what FSDP does; modules() is pre-order
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    reference = GPT(cfg)
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        if p.dim() >= 2:
            assert abs(p.std().item() - q.std().item()) < 0.15 * q.std().item(), name
        else:
            assert torch.equal(p, q), name  # norms at one, biases at zero
    proj = model.h[0].attn.c_proj.weight.std().item()
    assert abs(proj - 0.02 / math.sqrt(8)) < 0.002
    if mode == "modern":
        assert torch.equal(model.rope_cos, reference.rope_cos)


def test_activation_checkpointing_gives_the_same_gradients():
    model = tiny("modern").train()
    idx = torch.randint(0, 97, (2, 16))
    grads = []
    for flag in (False, True):
        model.zero_grad()
        model.checkpoint_blocks = flag
        model(idx).logsumexp(-1).mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compiled_model_matches_eager(backend):
    """aot_eager traces forward and backward through Dynamo and AOTAutograd in seconds (what breaks a graph
    shows here); inductor also generates and compiles C++ kernels (slow on a CPU)."""
    model = tiny("modern")
    idx = torch.randint(0, 97, (2, 16))
    eager = model(idx)
    model.compile(backend=backend)  # in place, as --model.system.compile does: state_dict keys unchanged
    compiled = model(idx)
    assert torch.allclose(compiled, eager, atol=1e-5)
    compiled.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert all(not k.startswith("_orig_mod") for k in model.state_dict())


def test_cpu_peak_measurement_leaves_the_global_rng_alone():
    from lit_llm.training.callbacks.throughput import measure_cpu_peak_tflops

    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    measure_cpu_peak_tflops(size=64, repeats=1)
    assert torch.equal(torch.rand(3), expected)  # the model's init must not depend on the device


def test_cpu_peak_is_the_best_recorded_on_this_machine_so_a_busy_start_does_not_overstate_mfu(tmp_path, monkeypatch):
    import json

    from lit_llm.training.callbacks import throughput

    for measured, expected in ((2.0, 2.0), (0.5, 2.0), (3.0, 3.0)):  # quiet, busy (the cores shared), quieter
        monkeypatch.setattr(throughput, "measure_cpu_peak_tflops", lambda: measured)
        assert throughput.best_cpu_peak_tflops(tmp_path) == expected
    table = json.loads((tmp_path / "cpu_peak.json").read_text())
    assert table == {f"{throughput.cpu_name()}, {torch.get_num_threads()} threads": 3.0}
    threads = torch.get_num_threads() + 1  # another thread count: its own record
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    monkeypatch.setattr(throughput, "measure_cpu_peak_tflops", lambda: 1.0)
    assert throughput.best_cpu_peak_tflops(tmp_path) == 1.0 and len(json.loads((tmp_path / "cpu_peak.json").read_text())) == 2
    (tmp_path / "cpu_peak.json").write_text("not json")  # a damaged record: the measurement alone, then rewritten
    monkeypatch.setattr(throughput, "measure_cpu_peak_tflops", lambda: 0.7)
    assert throughput.best_cpu_peak_tflops(tmp_path) == 0.7 and sorted(p.name for p in tmp_path.iterdir()) == ["cpu_peak.json"]
    assert list(json.loads((tmp_path / "cpu_peak.json").read_text()).values()) == [0.7]


def test_generation_never_samples_padding_mask_or_unknown():
    from lit_llm.data.tokenizer import MASK, PAD, UNK, char_tokenizer
    from lit_llm.model.generation import SamplingSettings, generate_text

    tok = char_tokenizer(["abc"])  # 3 characters + 4 specials: a random model samples specials often
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.get_vocab_size(), block_size=16, n_layer=1, n_head=2, n_embd=16))
    never = {tok.token_to_id(t) for t in (PAD, MASK, UNK)}
    sampled = model.generate(torch.tensor([[0]]), 200, temperature=2.0, generator=torch.Generator().manual_seed(0))
    assert never & set(sampled[0].tolist()), "the check below would prove nothing"
    text = generate_text(model, tok, "a", SamplingSettings(max_new_tokens=200, temperature=2.0, top_k=None))[0]
    assert not any(t in text for t in (PAD, MASK, UNK)) and len(text) > 1


def test_vocabulary_padding_changes_no_logit_and_no_generated_token():
    """Padding the embedding and head rows (65 -> 128) leaves the init of every real weight, the logits
    (vocab_size columns) and sampled text unchanged, and weights load across paddings."""
    cfg = dict(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32)
    torch.manual_seed(0)
    plain = GPT(GPTConfig(**cfg, pad_vocab_to=1))
    torch.manual_seed(0)
    padded = GPT(GPTConfig(**cfg, pad_vocab_to=64))
    assert padded.wte.weight.shape[0] == 128 and not padded.wte.weight[65:].any()
    assert plain.num_params() == padded.num_params() and plain.flops_per_token() == padded.flops_per_token()
    idx = torch.randint(0, 65, (2, 16))
    assert torch.equal(plain(idx), padded(idx)) and padded(idx).shape[-1] == 65
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(plain.generate(idx[:, :4], 20, temperature=1.0, generator=g()),
                       padded.generate(idx[:, :4], 20, temperature=1.0, generator=g()))
    other = GPT(GPTConfig(**cfg, pad_vocab_to=64))
    other.load_state_dict(plain.state_dict())  # 65 rows into 128
    assert torch.equal(other(idx), plain(idx))
    plain.load_state_dict(padded.state_dict())  # and back


def test_generate_reports_each_new_token_and_progress_shows_only_on_a_terminal():
    import io

    from lit_llm.cli.generate import PROGRESS_TOKENS, token_progress

    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)).eval()
    seen = []
    model.generate(torch.zeros(1, 3, dtype=torch.long), 12, on_token=seen.append)
    assert seen == list(range(1, 13))  # one call per token, past the full context (window slides at 8)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    with token_progress(PROGRESS_TOKENS - 1, Terminal()) as short, token_progress(10_000, io.StringIO()) as piped:
        assert short is None and piped is None  # short outputs and pipes: no bar
    screen = Terminal()
    with token_progress(PROGRESS_TOKENS, screen) as on_token:
        for n in range(1, PROGRESS_TOKENS + 1):
            on_token(n)
    assert "generating" in screen.getvalue() and f"{PROGRESS_TOKENS}/{PROGRESS_TOKENS}" in screen.getvalue()
