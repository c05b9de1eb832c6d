"""A tiny document model rendered to Markdown and to self-contained HTML (images inlined as base64).

Reports are made of headings, paragraphs, tables, images and framed boxes only; writing both formats from one
list of blocks keeps them identical in content without a Markdown-to-HTML dependency.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str  # `code` spans allowed


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Image:
    path: Path  # a PNG; Markdown links it by file name (it sits beside the report), HTML embeds it
    alt: str


@dataclass
class Box:
    """A framed summary at the top of a report: a bold title and one line per item."""

    title: str
    lines: list[str]


Block = Heading | Para | Table | Image | Box


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table_markdown(table: Table) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in table.header) + " |", "|" + "---|" * len(table.header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def to_markdown(blocks: list[Block]) -> str:
    parts = []
    for b in blocks:
        if isinstance(b, Heading):
            parts.append("#" * b.level + " " + b.text)
        elif isinstance(b, Para):
            parts.append(b.text)
        elif isinstance(b, Table):
            parts.append(table_markdown(b))
        elif isinstance(b, Image):
            parts.append(f"![{b.alt}]({Path(b.path).name})")
        elif isinstance(b, Box):
            parts.append("\n".join([f"> **{b.title}**", ">", *(f"> - {line}" for line in b.lines)]))
    return "\n\n".join(parts) + "\n"


def _inline(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(str(text), quote=False))


_STYLE = ("body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#222}"
          "table{border-collapse:collapse;margin:1rem 0;font-size:0.9rem}"
          "th,td{border:1px solid #ccc;padding:0.25rem 0.6rem;text-align:left}th{background:#f3f3f3}"
          "code{background:#f3f3f3;padding:0 0.2rem}img{max-width:100%}"
          ".box{border:2px solid #555;border-radius:6px;padding:0.5rem 1rem;margin:1rem 0;background:#fafafa}")


def to_html(blocks: list[Block], title: str) -> str:
    """A single HTML file: no external stylesheet, script or image (PNGs become data: URIs)."""
    body = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            body.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{_inline(h)}</th>" for h in b.header)
            rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in b.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(b, Image):
            data = base64.b64encode(Path(b.path).read_bytes()).decode("ascii")
            body.append(f'<p><img alt="{html.escape(b.alt)}" src="data:image/png;base64,{data}"></p>')
        elif isinstance(b, Box):
            items = "".join(f"<li>{_inline(line)}</li>" for line in b.lines)
            body.append(f'<div class="box"><strong>{_inline(b.title)}</strong><ul>{items}</ul></div>')
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
