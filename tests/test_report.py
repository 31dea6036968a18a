"""lit-llm report: built from small real runs (a 3-run sweep, a validation, a predict), its table and curve
data checked against the runs' metrics.csv, and the page rendered in headless Chromium."""

import csv
import dataclasses
import html
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lit_llm.cli.main import main
from lit_llm.studies.report import curves, table_row, varying_keys, write_report
from lit_llm.studies.report_html import COLUMNS
from lit_llm.studies.runs import find_runs

pytestmark = pytest.mark.slow  # real fits and a browser: ~25 s in all

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED.exists():  # CI clones main beside shared/ (as conftest.py)
    SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TOY = str(Path(__file__).parents[1] / "configs/model/toy.yaml")
TOKENS_PER_STEP = 4 * 16  # batch x block below
GRID = [(1, 8), (2, 8), (1, 16)]  # (n_layer, steps): sizes and budgets both vary, for the scaling fit


def data_args(corpus: Path, cache: Path) -> list[str]:
    return ["--data.corpus", str(corpus), "--data.tokenizer", "char", "--data.block_size", "16",
            "--data.cache_dir", str(cache), "--trainer.enable_progress_bar", "false", "--wandb.mode", "disabled"]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    """A sweep directory of 3 real fits as `lit-llm sweep` lays it out, plus a validate and a predict run."""
    source = SHARED / "tinyshakespeare.txt"
    if not source.exists():
        pytest.skip(f"{source} not present")
    base = tmp_path_factory.mktemp("report")
    corpus, cache, sweep = base / "tiny.txt", base / "cache", base / "runs" / "sweep"
    corpus.write_text(source.read_text()[:30_000])
    cwd = os.getcwd()
    os.chdir(base)  # nothing lands in the repository whatever a command defaults to
    try:
        runs = []
        for i, (n_layer, steps) in enumerate(GRID):
            root = sweep / f"run-{i:03d}"
            assert main(["fit", "--config", TOY, *data_args(corpus, cache), "--model.n_layer", str(n_layer),
                         "--data.batch_size", "4", "--data.eval_batch_size", "32", "--trainer.max_steps", str(steps),
                         "--trainer.val_check_interval", "5", "--trainer.log_every_n_steps", "2",
                         "--trainer.default_root_dir", str(root)]) == 0
            runs.append({"id": root.name, "params": {"model.n_layer": n_layer, "trainer.max_steps": steps},
                         "status": "finished"})
        # the state file `lit-llm sweep` writes (its runs as subprocesses would take ~3x longer here)
        (sweep / "sweep-state.json").write_text(json.dumps({"sweep": {"name": "tiny", "method": "grid"}, "runs": runs}))
        ckpt = str(sweep / "run-001/checkpoints/last.ckpt")
        assert main(["validate", "--ckpt_path", ckpt, *data_args(corpus, cache),
                     "--trainer.default_root_dir", str(sweep / "run-001")]) == 0
        prompts = base / "prompts.txt"
        prompts.write_text("ROMEO:\nJULIET:\n")
        assert main(["predict", "--ckpt_path", ckpt, *data_args(corpus, cache), "--data.prompts", str(prompts),
                     "--samples.max_new_tokens", "8", "--trainer.default_root_dir", str(sweep / "run-001")]) == 0
    finally:
        os.chdir(cwd)
    return base / "runs"


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


# --- data -----------------------------------------------------------------------------------------
def test_finds_fits_and_evaluations(runs_dir):
    runs, skipped = find_runs(runs_dir)
    fits = [r for r in runs if r.is_fit]
    assert [r.label for r in fits] == ["sweep/run-000", "sweep/run-001 v0", "sweep/run-002"]
    assert [r.sweep_params["model.n_layer"] for r in fits] == [1, 2, 1]
    evals = [r for r in runs if not r.is_fit]
    assert [r.label for r in evals] == ["sweep/run-001 v1"] and "val/loss" in evals[0].summary
    assert skipped == []  # predict's log directory holds no metrics.csv: not a run left unfinished
    # RUNS_DIR may also be a run root or a log directory itself
    assert [r.label for r in find_runs(runs_dir / "sweep/run-000")[0]] == ["run-000"]
    assert [r.label for r in find_runs(runs_dir / "sweep/run-000/lightning_logs/version_0")[0]] == ["run-000"]
    assert [r.label for r in find_runs(runs_dir / "sweep/run-001/lightning_logs")[0]] == ["run-001 v0", "run-001 v1"]


def test_curves_match_metrics_csv(runs_dir):
    run = next(r for r in find_runs(runs_dir)[0] if r.label == "sweep/run-002")
    rows = read_csv(run.log_dir / "metrics.csv")
    train, val = [r for r in rows if r["train/loss"]], [r for r in rows if r["val/loss"]]
    d = curves(run)
    assert d["train"]["tokens"].tolist() == [float(r["tokens_seen"]) for r in train]
    assert d["train"]["loss"].tolist() == [float(r["train/loss"]) for r in train]
    # a validation row at step s comes after s + 1 steps of 4 x 16 tokens, and says so
    assert [int(r["step"]) for r in val] == [4, 9, 14, 15]
    assert [float(r["tokens_seen"]) for r in val] == [(int(r["step"]) + 1) * TOKENS_PER_STEP for r in val]
    old = dataclasses.replace(run, rows=[{k: v for k, v in r.items() if not ("val/loss" in r and k == "tokens_seen")}
                                         for r in run.rows])  # a run from before: interpolated from the steps
    assert curves(old)["val"]["tokens"].tolist() == d["val"]["tokens"].tolist()
    assert d["val"]["tokens"].tolist() == [(int(r["step"]) + 1) * TOKENS_PER_STEP for r in val]
    assert d["val"]["loss"].tolist() == [float(r["val/loss"]) for r in val]
    assert d["val"]["ppl"].tolist() == [float(r["val/ppl"]) for r in val]
    fpt = run.summary["flops_per_token"]
    assert d["val"]["flops"].tolist() == [(int(r["step"]) + 1) * TOKENS_PER_STEP * fpt for r in val]
    timed = [r for r in train if r["train/tokens_per_sec"]]
    assert len(timed) == len(train) - 1  # the first window (start-up) is not measured
    assert d["throughput"]["tokens"].tolist() == [float(r["tokens_seen"]) for r in timed]
    assert d["throughput"]["tokens_per_sec"].tolist() == [float(r["train/tokens_per_sec"]) for r in timed]
    assert d["throughput"]["mfu"].tolist() == [float(r["train/mfu"]) for r in timed]


def test_table_rows_match_summaries_and_csv(runs_dir):
    fits = [r for r in find_runs(runs_dir)[0] if r.is_fit]
    keys = varying_keys(fits)
    assert keys == ["model.n_layer", "trainer.max_steps"]
    for run, (n_layer, steps) in zip(fits, GRID):
        row = table_row(run, keys)
        last_val = [r for r in read_csv(run.log_dir / "metrics.csv") if r["val/loss"]][-1]
        assert row["val_loss"] == pytest.approx(float(last_val["val/loss"]), rel=1e-6)
        assert row["val_ppl"] == pytest.approx(math.exp(float(last_val["val/loss"])), rel=1e-5)
        assert row["tokens"] == steps * TOKENS_PER_STEP and row["steps"] == steps
        assert row["flops"] == row["tokens"] * run.summary["flops_per_token"]
        assert row["params"] > row["params_non_embedding"] > 0
        assert row["model"] == f"{n_layer}L·64d·4h" and row["config"] == f"n_layer={n_layer}, trainer.max_steps={steps}"
        tp = run.summary["throughput"]
        assert row["tokens_per_sec"] == tp["tokens_per_sec_per_device_mean"]  # one device
        assert row["mfu"] == pytest.approx(tp["mfu"] * tp["tokens_per_sec_per_device_mean"] / tp["tokens_per_sec_per_device"])
        assert set(row) == {key for key, _, _ in COLUMNS}


# --- the page -------------------------------------------------------------------------------------
def test_report_sections(runs_dir, tmp_path):
    page = write_report(runs_dir, tmp_path / "report", bootstrap=4).read_text()
    assert "<h3>Sweep tiny (sweep)</h3>" in page
    # 3 runs over 2 sizes and 2 budgets: a fit (however loose); the validation of run-001 is no 4th point
    assert "<p>3 runs. L(N, D) =" in page
    assert "ROMEO:" in page and "JULIET:" in page  # predict's samples
    assert "Evaluations" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing fetched: self-contained
    single = write_report(runs_dir / "sweep/run-000", tmp_path / "single").read_text()
    assert "No scaling fit: no sweep" in single and "No samples" not in single
    # the samples generated at validation (samples.jsonl): the first and the last validation's
    samples = [json.loads(x) for x in (runs_dir / "sweep/run-000/lightning_logs/version_0/samples.jsonl").read_text().splitlines()]
    assert sorted({s["step"] for s in samples}) == [5, 8] and len(samples) == 2 * 2  # 2 prompts each
    assert "<h3>lightning_logs/version_0: during training</h3>" in single and "After 8 steps (512 tokens)" in single
    assert all(html.escape(s["sample"], quote=True) in single for s in samples)
    assert single.count("<tr><td>") == 1


def test_bad_input_is_one_line_and_overwrites_nothing(runs_dir, tmp_path, capsys):
    def error(*args):
        capsys.readouterr()
        assert main(["report", *map(str, args)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("lit-llm: error: ") and err.count("\n") == 1
        return err

    assert "not a directory" in error(tmp_path / "missing", "--out", tmp_path / "o1")
    (tmp_path / "empty").mkdir()
    assert "no training runs" in error(tmp_path / "empty", "--out", tmp_path / "o2")
    afile = tmp_path / "afile"
    afile.write_text("keep")
    assert "is a file" in error(runs_dir, "--out", afile)
    assert "cannot write" in error(runs_dir, "--out", afile / "sub")
    assert afile.read_text() == "keep"
    (tmp_path / "unfinished/lightning_logs/version_0").mkdir(parents=True)
    shutil.copytree(runs_dir / "sweep/run-000", tmp_path / "unfinished/run-000")
    (tmp_path / "unfinished/lightning_logs/version_0/metrics.csv").write_text("step,train/loss\n0,4.1\n")
    page = write_report(tmp_path / "unfinished", tmp_path / "o3").read_text()
    assert "Skipped (no readable summary.json: killed, failed or still running): lightning_logs/version_0." in page
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()

    out = tmp_path / "out"
    (out / "report.html").parent.mkdir()
    (out / "report.html").write_text("old")
    assert "--overwrite" in error(runs_dir, "--out", out)
    assert (out / "report.html").read_text() == "old"
    assert main(["report", str(runs_dir), "--out", str(out), "--overwrite", "--bootstrap", "2"]) == 0
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in out.iterdir()] == ["report.html"]  # no temporary file left


# --- in a browser ---------------------------------------------------------------------------------
# The check the test adds to a copy of the page (the report itself ships no test code). Errors are
# caught from the first script on (before the page's own run), console.error included; on load the
# rows of the runs table, every image's decoded size and the errors are written to <pre id=selfcheck>,
# which Chromium's --dump-dom shows.
CATCH_ERRORS = """<script>window.reportErrors=[];
addEventListener('error',e=>reportErrors.push(String(e.message||('failed to load '+(e.target&&e.target.tagName)))),true);
const consoleError=console.error;console.error=(...a)=>{reportErrors.push(a.join(' '));consoleError(...a)};</script>"""
SELF_CHECK = """<pre id=selfcheck></pre><script>
addEventListener('load',()=>{document.getElementById('selfcheck').textContent=JSON.stringify({
rows:document.querySelectorAll('#runs tbody tr').length,
images:[...document.images].map(im=>[im.naturalWidth,im.naturalHeight]),errors:reportErrors})});</script>"""


def with_check(page: str) -> str:
    """The page with the check: the error catcher before the page's first script, the report at its end."""
    assert page.count("<title>") == 1 and page.count("</body>") == 1 and "<script" not in page.split("<title>")[0]
    return page.replace("<title>", CATCH_ERRORS + "<title>").replace("</body>", SELF_CHECK + "</body>")


def chromium(page: Path, tmp_path: Path) -> tuple[dict, str]:
    """Loads a copy of the page with the check added in headless Chromium (no network features) and
    returns what the check wrote on load, and Chromium's log (which holds every console message)."""
    checked = tmp_path / f"checked-{page.name}"
    checked.write_text(with_check(page.read_text(encoding="utf-8")), encoding="utf-8")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("LIT_LLM_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is required here (LIT_LLM_REQUIRE_CHROMIUM) but not installed")
        pytest.skip("chromium not installed (apt-get install chromium); CI installs it and runs this test")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
           "--disable-extensions", "--disable-domain-reliability", "--no-default-browser-check", "--mute-audio",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=10000", "--dump-dom", checked.resolve().as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    found = re.search(r'<pre id="selfcheck">(.*?)</pre>', out.stdout, re.S)
    assert found and found.group(1), f"the page's self-check did not run:\n{out.stderr[-2000:]}"
    check = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    check["dom"] = out.stdout
    return check, out.stderr


def test_report_renders_in_chromium(runs_dir, tmp_path):
    page = write_report(runs_dir, tmp_path / "report", bootstrap=4)
    assert "selfcheck" not in page.read_text() and "reportErrors" not in page.read_text()  # no test code shipped
    check, log = chromium(page, tmp_path)
    assert check["errors"] == []
    assert [line for line in log.splitlines() if ":CONSOLE" in line] == []  # the page logs nothing
    assert check["rows"] == len(GRID)
    assert len(check["images"]) == 3 + 3  # curves vs tokens, vs FLOPs, throughput; the sweep's 3 scaling plots
    assert all(w > 0 and h > 0 for w, h in check["images"])


def test_browser_check_catches_errors_and_sorts(runs_dir, tmp_path):
    """The same check on a page broken on purpose: a script error and an image that does not decode are
    caught; clicking a header sorts the table by that column."""
    page = write_report(runs_dir, tmp_path / "report", bootstrap=4)
    col = [key for key, _, _ in COLUMNS].index("val_loss")
    probe = f"""<script>
const labels=()=>[...document.querySelectorAll('#runs tbody tr')].map(r=>r.cells[0].textContent);
const th=document.querySelectorAll('#runs th')[{col}];th.click();const up=labels();th.click();
document.body.insertAdjacentHTML('beforeend','<pre id=order>'+JSON.stringify([up,labels()])+'</pre>');
</script><img alt=broken src="data:image/png;base64,AAAA"><script>noSuchFunction()</script>"""
    broken = tmp_path / "broken.html"
    broken.write_text(page.read_text().replace("</body>", probe + "</body>"))  # after the page's own scripts
    check, log = chromium(broken, tmp_path)
    assert any("noSuchFunction" in e for e in check["errors"]) and any("IMG" in e for e in check["errors"])
    assert [0, 0] in [list(s) for s in check["images"]]
    assert "noSuchFunction" in log  # the console log shows it too
    up, down = json.loads(re.search(r'<pre id="order">(.*?)</pre>', check["dom"]).group(1).replace("&quot;", '"'))
    by_loss = sorted((r for r in find_runs(runs_dir)[0] if r.is_fit), key=lambda r: r.summary["val/loss"])
    assert up == [r.label for r in by_loss] and down == up[::-1]
