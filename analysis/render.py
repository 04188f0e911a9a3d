"""Rendering: tables formatted for reading (percent with +-CI) as Markdown, booktabs LaTeX and
HTML, and the report document (a list of blocks) as report.md and one self-contained report.html.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import numpy as np
import pandas as pd

PM = "±"
MISSING = "–"


# ---------------------------------------------------------------------------------------------
# Cell formatting (vectorised over a column; these tables have at most one row per run)
def number(values, digits: int = 2, scale: float = 1.0) -> list[str]:
    return [MISSING if not np.isfinite(v) else f"{v * scale:.{digits}f}" for v in np.asarray(values, dtype=float)]


def mean_pm(mean, ci, digits: int = 2, scale: float = 100.0, sign: bool = False) -> list[str]:
    """'81.23 ± 0.45' (percent by default); the mean alone when the CI is undefined (one trial)."""
    out = []
    for m, c in zip(np.asarray(mean, dtype=float), np.asarray(ci, dtype=float)):
        if not np.isfinite(m):
            out.append(MISSING)
            continue
        text = f"{m * scale:+.{digits}f}" if sign else f"{m * scale:.{digits}f}"
        out.append(f"{text} {PM} {c * scale:.{digits}f}" if np.isfinite(c) else text)
    return out


def p_values(values) -> list[str]:
    return [MISSING if not np.isfinite(p) else ("<0.0001" if p < 1e-4 else f"{p:.4f}") for p in np.asarray(values, dtype=float)]


def display_summary(summary: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            **{k: summary[k].astype(str) for k in keys},
            "labelled": summary["n_labeled"].astype(str),
            "trials": summary["n_trials"].astype(str),
            "accuracy (%)": mean_pm(summary["acc_mean"], summary["acc_ci95"]),
            "macro-F1 (%)": mean_pm(summary["f1_mean"], summary["f1_ci95"]),
        }
    )


def display_runs(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    expected = runs["cycles_expected"].map(lambda v: "" if pd.isna(v) else f"/{int(v)}")
    return pd.DataFrame(
        {
            "run": runs["run_id"].astype(str),
            "status": runs["status"].astype(str),
            "cycles": runs["cycles_done"].astype(str) + expected,
            "final acc (%)": number(runs["final_acc"], scale=100),
            "final F1 (%)": number(runs["final_f1"], scale=100),
            "AUBC (%)": number(runs["aubc"], scale=100),
            "labels to target": number(runs["labels_to_target"], digits=0),
            "train (h)": number(runs["train_time_s"], digits=3, scale=1 / 3600),
            "peak mem (GiB)": number(runs["peak_mem_bytes"], scale=1 / 2**30),
            "energy (kWh)": number(runs["energy_j"], digits=3, scale=1 / 3.6e6),
        }
    )


def display_vs_random(vs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            **{k: vs[k].astype(str) for k in keys},
            "labelled": vs["n_labeled"].astype(str),
            "pairs": vs["n_pairs"].astype(str),
            "gain (points)": mean_pm(vs["diff_mean"], vs["diff_ci95"], sign=True),
            "p": p_values(vs["p_value"]),
            **({"p (Holm)": p_values(vs["p_holm"])} if "p_holm" in vs else {}),
        }
    )


def display_module_effect(effect: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """module_effect.csv for reading: as vs_random, paired within the keys other than strategy."""
    shown = display_vs_random(effect, [k for k in keys if k != "strategy"])
    return shown.rename(columns={"gain (points)": "effect (points)"})


def display_groups(groups: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            **{k: groups[k].astype(str) for k in keys},
            "runs": groups["n_runs"].astype(str),
            "done": groups["n_done"].astype(str),
            "at budget": groups["n_final"].astype(str),
            "labelled": groups["final_n_labeled"].map(lambda v: MISSING if pd.isna(v) else str(int(v))),
            "final acc (%)": mean_pm(groups["final_acc_mean"], groups["final_acc_ci95"]),
            "AUBC (%)": mean_pm(groups["aubc_mean"], groups["aubc_ci95"]),
            "labels to target": [
                f"{v} ({int(k)}/{int(n)} reached)" if n == n else v
                for v, k, n in zip(
                    number(groups["labels_to_target_mean"], digits=0), groups["labels_to_target_n"].fillna(0), groups["n_final"]
                )
            ],
            "train h/run": number(groups["train_time_s_mean"], digits=3, scale=1 / 3600),
            "peak mem (GiB)": number(groups["peak_mem_bytes_max"], scale=1 / 2**30),
            "GPU-hours": number(groups["gpu_hours"], digits=3),
        }
    )


def display_ranking(ranking: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    gk = [k for k in keys if k != "optimizer"]
    return pd.DataFrame(
        {
            **{k: ranking[k].astype(str) for k in gk},
            "labelled": ranking["n_labeled"].astype(str),
            "best": [f"{o} ({a})" for o, a in zip(ranking["best"].astype(str), number(ranking["best_acc"], scale=100))],
            "runner-up": [
                f"{o} ({a})" for o, a in zip(ranking["runner_up"].astype(str), number(ranking["runner_up_acc"], scale=100))
            ],
            "pairs": ranking["n_pairs"].map(lambda v: "0" if pd.isna(v) else str(int(v))),
            "gain (points)": mean_pm(ranking["diff_mean"], ranking["diff_ci95"], sign=True),
            "p": p_values(ranking["p_value"]),
        }
    )


def display_pairs(pairs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """optimizers.csv / models.csv for reading: a - b in AUBC points, p and Holm's p."""
    a, b = [c for c in pairs.columns if c.endswith("_a")][0], [c for c in pairs.columns if c.endswith("_b")][0]
    factor = a[:-2]
    return pd.DataFrame(
        {
            **{k: pairs[k].astype(str) for k in keys if k != factor},
            "a": pairs[a].astype(str),
            "b": pairs[b].astype(str),
            "pairs": pairs["n_pairs"].astype(str),
            "AUBC a - b (points)": mean_pm(pairs["diff_mean"], pairs["diff_ci95"], sign=True),
            "p": p_values(pairs["p_value"]),
            "p (Holm)": p_values(pairs["p_holm"]),
            "d_z": number(pairs["d_z"]) if "d_z" in pairs else "–",
            "p (question)": p_values(pairs["p_family"]) if "p_family" in pairs else "–",
            "significant": np.where(pairs["significant"], "yes", "no") if "significant" in pairs else "–",
        }
    )


# ---------------------------------------------------------------------------------------------
# Table renderers
_NUMERIC = re.compile(r"^([+\-<]?[0-9][0-9.,e+\-]*(/[0-9]+)?( ± [0-9.]+)?|–)$")


def _numeric_columns(table: pd.DataFrame) -> list[bool]:
    return [bool(len(table)) and all(_NUMERIC.match(v) for v in table[c]) for c in table.columns]


def markdown_table(table: pd.DataFrame) -> str:
    def cell(v: str) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    align = ["---:" if n else "---" for n in _numeric_columns(table)]
    lines = ["| " + " | ".join(cell(c) for c in table.columns) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


_LATEX = str.maketrans(
    {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
        "<": r"\textless{}",
        ">": r"\textgreater{}",
        PM: r"$\pm$",
        MISSING: "--",
        "·": r"\textperiodcentered{}",
        "≥": r"$\geq$",
    }
)


def latex_escape(text: str) -> str:
    """Text safe inside a LaTeX table cell or caption (every special character escaped)."""
    return str(text).translate(_LATEX)


LONG_TABLE_ROWS = 45  # above this a table breaks across pages (longtable) instead of floating


def latex_table(table: pd.DataFrame, caption: str, label: str) -> str:
    """A booktabs table (longtable when long) that compiles with \\usepackage{booktabs,longtable}."""
    spec = "".join("r" if n else "l" for n in _numeric_columns(table))
    head = " & ".join(latex_escape(c) for c in table.columns) + r" \\"
    body = [" & ".join(latex_escape(v) for v in row) + r" \\" for row in table.itertuples(index=False)]
    cap, lab = latex_escape(caption), re.sub(r"[^A-Za-z0-9:.-]", "-", label)  # labels: no special characters
    note = "% generated by python -m analysis.report; needs \\usepackage{booktabs} and \\usepackage{longtable}\n"
    if len(table) > LONG_TABLE_ROWS:
        return note + "\n".join(
            [
                rf"\begin{{longtable}}{{{spec}}}",
                rf"\caption{{{cap}}}\label{{{lab}}} \\",
                r"\toprule",
                head,
                r"\midrule",
                r"\endfirsthead",
                r"\toprule",
                head,
                r"\midrule",
                r"\endhead",
                r"\bottomrule",
                r"\endfoot",
                *body,
                r"\end{longtable}",
                "",
            ]
        )
    return note + "\n".join(
        [
            r"\begin{table}[htbp]",
            r"\centering",
            r"\small",
            rf"\caption{{{cap}}}",
            rf"\label{{{lab}}}",
            rf"\begin{{tabular}}{{{spec}}}",
            r"\toprule",
            head,
            r"\midrule",
            *body,
            r"\bottomrule",
            r"\end{tabular}",
            r"\end{table}",
            "",
        ]
    )


def html_table(table: pd.DataFrame) -> str:
    numeric = _numeric_columns(table)
    cls = [' class="num"' if n else "" for n in numeric]
    head = "".join(f"<th{c}>{html.escape(str(h))}</th>" for h, c in zip(table.columns, cls))
    rows = [
        "<tr>" + "".join(f"<td{c}>{html.escape(str(v))}</td>" for v, c in zip(row, cls)) + "</tr>"
        for row in table.itertuples(index=False)
    ]
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>"


# ---------------------------------------------------------------------------------------------
# The report document: a list of blocks, rendered once as Markdown and once as HTML.
# ("h1"|"h2"|"p", text) | ("ul", [text]) | ("pre", text) | ("table", DataFrame)
# | ("figure", path, caption) | ("files", [(label, path relative to the report)])
# | ("details", summary text, DataFrame): a folded table, in the HTML only (Markdown links the file)
_MD_PREFIX = {"h1": "# ", "h2": "## ", "p": ""}


def to_markdown(blocks: list[tuple], report_dir: Path) -> str:
    out = []
    for kind, *args in blocks:
        if kind in _MD_PREFIX:
            out.append(f"{_MD_PREFIX[kind]}{args[0]}\n")
        elif kind == "ul":
            out.append("".join(f"- {item}\n" for item in args[0]))
        elif kind == "pre":
            out.append(f"```\n{args[0].rstrip()}\n```\n")
        elif kind == "table":
            out.append(markdown_table(args[0]))
        elif kind == "figure":
            path, caption = args
            out.append(f"![{caption}]({Path(path).relative_to(report_dir).as_posix()})\n\n*{caption}*\n")
        elif kind == "files":
            out.append("".join(f"- [{label}]({rel})\n" for label, rel in args[0]))
    return "\n".join(out)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #111; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.85rem; }
th, td { padding: 0.2rem 0.6rem; border-bottom: 1px solid #ddd; text-align: left; }
thead th { border-bottom: 2px solid #333; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9rem; color: #333; } pre { background: #f6f6f6; padding: 0.6rem; overflow-x: auto; font-size: 0.8rem; }
details { margin: 0.5rem 0 1rem; }
"""


def to_html(blocks: list[tuple], title: str, report_dir: Path) -> str:
    """One self-contained page: figures embedded as base64 PNG, CSS inline, nothing fetched."""
    out = [
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>'
    ]
    for kind, *args in blocks:
        if kind in ("h1", "h2", "p", "pre"):
            out.append(f"<{kind}>{html.escape(args[0])}</{kind}>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in args[0]) + "</ul>")
        elif kind == "table":
            out.append(html_table(args[0]))
        elif kind == "figure":
            path, caption = args
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            out.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        elif kind == "files":
            out.append(
                "<ul>"
                + "".join(f'<li><a href="{html.escape(rel)}">{html.escape(label)}</a></li>' for label, rel in args[0])
                + "</ul>"
            )
        elif kind == "details":
            out.append(f"<details><summary>{html.escape(args[0])}</summary>\n{html_table(args[1])}\n</details>")
    out.append("</body>\n</html>\n")
    return "\n".join(out)
