"""Rendering the evaluation: markdown and self-contained HTML (plots embedded) from one list of sections, and the
PNG plots (confusion matrices, accuracy by mode, cost vs accuracy, training curves)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Section:
    title: str
    text: str = ""
    header: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # PNG file names next to the report


def fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) <= 1 else f"{value:,.2f}"
    return str(value)


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(fmt(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(title: str, sections: list[Section]) -> str:
    parts = [f"# {title}", ""]
    for s in sections:
        parts += [f"## {s.title}", ""]
        if s.text:
            parts += [s.text, ""]
        if s.header:
            parts += [md_table(s.header, s.rows), ""]
        parts += [f"![{name}]({name})" for name in s.images]
        if s.images:
            parts.append("")
    return "\n".join(parts)


def render_html(title: str, sections: list[Section], image_dir: Path) -> str:
    """One file, no external references: images are inlined as base64 data URIs."""
    esc = html.escape
    body = [f"<h1>{esc(title)}</h1>"]
    for s in sections:
        body.append(f"<h2>{esc(s.title)}</h2>")
        if s.text:
            body += [f"<p>{esc(p)}</p>" for p in s.text.split("\n\n")]
        if s.header:
            body.append("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in s.header) + "</tr></thead><tbody>")
            body += ["<tr>" + "".join(f"<td>{esc(fmt(c))}</td>" for c in row) + "</tr>" for row in s.rows]
            body.append("</tbody></table>")
        for name in s.images:
            data = base64.b64encode((image_dir / name).read_bytes()).decode()
            body.append(f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{data}"/>'
                        f"<figcaption>{esc(name)}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{style}</style>"
            f"</head><body>{''.join(body)}</body></html>\n")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    # no timestamp/software keys: the same numbers give the same PNG bytes
    fig.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)
    return path.name


def plot_confusion(conf: list[list[int]], labels: list[str], title: str, path: Path) -> str:
    plt = _plt()
    m = np.asarray(conf)[:, : len(labels)]
    fig, ax = plt.subplots(figsize=(0.55 * len(labels) + 2.5, 0.5 * len(labels) + 2))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if m[i, j]:
                ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xlabel("routed")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_accuracy_by_mode(results: dict[str, dict[str, dict]], metric: str, path: Path) -> str:
    plt = _plt()
    sets = list(results)
    variants = list(dict.fromkeys(v for s in results.values() for v in s))
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / max(len(variants), 1)
    for k, v in enumerate(variants):
        vals = [results[s].get(v, {}).get(metric, 0.0) for s in sets]
        ax.bar(np.arange(len(sets)) + k * width, vals, width, label=v)
    ax.set_xticks(np.arange(len(sets)) + width * (len(variants) - 1) / 2, sets)
    ax.set_ylim(0, 1)
    ax.set_ylabel(metric)
    ax.legend(fontsize=8, ncol=3)
    ax.set_title(f"{metric} by routing mode / backend")
    return _save(fig, path)


def plot_cost_vs_accuracy(points: list[tuple[str, float, float]], path: Path) -> str:
    """(label, cost relative to always-opus, tier accuracy) per variant, plus the fixed policies."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label, cost, acc in points:
        ax.scatter(cost, acc)
        ax.annotate(label, (cost, acc), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("cost / always-opus cost")
    ax.set_ylabel("tier accuracy")
    ax.set_xlim(0, 1.05)
    ax.set_ylim(0, 1.05)
    ax.set_title("cost vs tier accuracy")
    return _save(fig, path)


def plot_training_curves(curves: dict[str, list[float]], path: Path) -> str:
    plt = _plt()
    names = [n for n, v in curves.items() if v]
    cols = 3
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        ax.plot(curves[name])
        ax.set_title(name, fontsize=9)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)
