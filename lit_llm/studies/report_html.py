"""The HTML pieces of `lit-llm report` (lit_llm/studies/report.py): the runs and evaluations tables,
samples, the style and the table-sorting script."""

from __future__ import annotations

import html
import math
from pathlib import Path

from lit_llm.studies.runs import Run, read_jsonl


def training_samples(root: Path, path: Path) -> list[str]:
    """The samples a fit generated at its first and its last validation (samples.jsonl)."""
    items = read_jsonl(path)
    steps = sorted({item.get("step") for item in items if isinstance(item.get("step"), int)})
    if not steps:
        return []
    parts = [f"<h3>{html.escape(path.parent.relative_to(root).as_posix())}: during training</h3>"]
    for step in dict.fromkeys((steps[0], steps[-1])):
        rows = [item for item in items if item.get("step") == step]
        tokens = rows[0].get("tokens_seen")
        parts.append(f"<p class=note>After {step:,} steps ({_si(float(tokens or 0))} tokens):</p>")
        for item in rows:
            parts.append(f"<div class=sample><b>{html.escape(repr(item.get('prompt', '')))}</b>"
                         f"<pre>{html.escape(str(item.get('sample', '')))}</pre></div>")
    if len(steps) > 2:
        parts.append(f"<p class=note>{len(steps) - 2} validations between them in {html.escape(str(path))}</p>")
    return parts


def samples_section(root: Path, limit: int = 8) -> str:
    train_files = sorted(root.rglob("samples.jsonl"))
    files = sorted(root.rglob("predictions.jsonl"))
    if not files and not train_files:
        return ("<p class=note>No samples: none generated during training (<code>--samples.enabled false</code>, "
                "or runs from before lit_llm wrote <code>samples.jsonl</code>) and none from "
                "<code>lit-llm predict --ckpt_path CKPT --data.prompts FILE</code> (<code>predictions.jsonl</code>).</p>")
    parts = [part for path in train_files for part in training_samples(root, path)]
    for path in files:
        items = read_jsonl(path)
        parts.append(f"<h3>{html.escape(path.parent.relative_to(root).as_posix())}: predict</h3>")
        for item in items[:limit]:
            parts.append(f"<div class=sample><b>{html.escape(repr(item.get('prompt', '')))}</b>"
                         f"<pre>{html.escape(str(item.get('completion', '')))}</pre></div>")
        if len(items) > limit:
            parts.append(f"<p class=note>… {len(items) - limit} more in {html.escape(str(path))}</p>")
    return "".join(parts)


def _fmt(value, kind: str) -> tuple[str, str]:
    """(shown text, sort key) of a table cell."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–", "NaN"
    if kind == "text":
        return str(value), ""
    v = float(value)
    text = {"int": f"{v:,.0f}", "si": _si(v), "loss": f"{v:.4f}", "ppl": f"{v:.2f}", "pct": f"{100 * v:.2f}%",
            "sec": f"{v:.1f}", "sci": f"{v:.3g}"}[kind]
    return text, repr(v)


def _si(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:.3g}"


COLUMNS = [("run", "run", "text"), ("model", "model", "text"), ("config", "config (differs between runs)", "text"),
           ("params", "params", "si"), ("params_non_embedding", "non-emb. params", "si"), ("tokens", "tokens", "si"),
           ("flops", "FLOPs", "sci"), ("steps", "steps", "int"), ("val_loss", "val loss", "loss"),
           ("val_ppl", "val ppl", "ppl"), ("tokens_per_sec", "tokens/s", "si"), ("mfu", "MFU", "pct"),
           ("seconds", "time (s)", "sec")]


def runs_table(rows: list[dict]) -> str:
    head = "".join(f"<th title='click to sort'>{html.escape(title)}</th>" for _, title, _ in COLUMNS)
    body = []
    for row in rows:
        body.append("<tr>" + "".join(_cell(row[key], kind) for key, _, kind in COLUMNS) + "</tr>")
    return f"<table id=runs class=sortable><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cell(value, kind: str) -> str:
    text, sort = _fmt(value, kind)
    return f"<td>{html.escape(text)}</td>" if kind == "text" else f"<td data-v='{sort}'>{html.escape(text)}</td>"


def evaluations_table(evals: list[Run]) -> str:
    if not evals:
        return ""
    kinds = (("global_step", "int"), ("val/loss", "loss"), ("val/ppl", "ppl"), ("test/loss", "loss"), ("test/ppl", "ppl"))
    rows = "".join("<tr>" + _cell(r.label, "text") + "".join(_cell(r.summary.get(k), f) for k, f in kinds) + "</tr>"
                   for r in evals)
    return ("<h2>Evaluations</h2><p class=note>Summaries of <code>lit-llm validate</code>/<code>test</code> "
            "(a checkpoint evaluated, no training).</p><table class=sortable><thead><tr><th>run</th><th>step</th>"
            f"<th>val loss</th><th>val ppl</th><th>test loss</th><th>test ppl</th></tr></thead><tbody>{rows}</tbody></table>")


STYLE = """body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1500px}
table{border-collapse:collapse;margin:8px 0 16px}th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}
td:nth-child(-n+3){text-align:left}th{background:#f3f3f3;cursor:pointer;user-select:none}
th[data-dir=asc]::after{content:" ▲"}th[data-dir=desc]::after{content:" ▼"}tbody tr:nth-child(even){background:#fafafa}
img{max-width:100%;border:1px solid #eee;margin:4px}.row img{max-width:32%}.note{color:#666}
.sample pre{background:#f7f7f7;padding:6px;white-space:pre-wrap;margin:2px 0 10px}"""

# Click a header to sort by it (again to reverse); numeric cells sort by data-v, missing values last.
SORT_SCRIPT = """document.querySelectorAll('table.sortable th').forEach((th,i)=>th.addEventListener('click',()=>{
const body=th.closest('table').tBodies[0],asc=th.dataset.dir!=='asc';
th.parentNode.querySelectorAll('th').forEach(h=>delete h.dataset.dir);th.dataset.dir=asc?'asc':'desc';
const key=r=>{const c=r.cells[i];return c.dataset.v===undefined?c.textContent:parseFloat(c.dataset.v)};
[...body.rows].sort((a,b)=>{const x=key(a),y=key(b);
if(typeof x==='number'){if(isNaN(x)||isNaN(y))return isNaN(x)-isNaN(y);return asc?x-y:y-x}
return(asc?1:-1)*x.localeCompare(y,undefined,{numeric:true})}).forEach(r=>body.appendChild(r))}));"""
