"""The docs' line links into the source still point at the code they describe.

docs/how-it-works.md promises "Line links point at this version of the files", and links such as
[`LMModule._step`](../src/rnnlm/training/module.py#L113-L126) go stale silently whenever code above
them moves. These checks read files only (no model, no training):

- a link whose text is a code symbol in backticks must start at that symbol's `def`/`class`/assignment
  line (decorators excluded) and, when it gives a range, end on the symbol's last line;
- every other `#L` link (plain text such as "lines 160-164", or a file name) must stay inside its file.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from conftest import REPO_ROOT

DOCS = sorted((REPO_ROOT / "docs").glob("*.md")) + [REPO_ROOT / "README.md"]

# [text](path/to/file.py#L12) or [text](path/to/file.py#L12-L34)
LINK = re.compile(r"\[(?P<text>[^\]\n]+)\]\((?P<path>[^)\s#]+\.py)#L(?P<a>\d+)(?:-L(?P<b>\d+))?\)")
# `RNNLM`, `LMModule._step`, `metrics.perplexity`: a dotted Python name in backticks, nothing else.
SYMBOL = re.compile(r"`(?P<name>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)`")

DEFINITION_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)


@dataclass(frozen=True)
class Link:
    doc: Path
    doc_line: int
    markdown: str
    text: str
    target: Path
    start: int
    end: int | None  # None for a single-line anchor (#L12)

    @property
    def symbol(self) -> str | None:
        """The linked symbol's own name (the last dotted component), or None for plain-text links."""
        m = SYMBOL.fullmatch(self.text.strip())
        return m["name"].split(".")[-1] if m else None

    def where(self) -> str:
        return f"{self.doc.relative_to(REPO_ROOT)}:{self.doc_line}: {self.markdown}"


def _links() -> list[Link]:
    found = []
    for doc in DOCS:
        if not doc.exists():
            continue
        for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1):
            for m in LINK.finditer(line):
                found.append(
                    Link(
                        doc=doc,
                        doc_line=n,
                        markdown=m[0],
                        text=m["text"],
                        target=(doc.parent / m["path"]).resolve(),
                        start=int(m["a"]),
                        end=int(m["b"]) if m["b"] else None,
                    )
                )
    return found


@cache
def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@cache
def _definition_ends(path: Path) -> dict[tuple[int, str], int]:
    """(first line, name) -> last line of every function, class and assigned name in the file."""
    ends: dict[tuple[int, str], int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, DEFINITION_NODES):
            continue
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
        else:
            names = [node.name]
        for name in names:
            ends[(node.lineno, name)] = node.end_lineno or node.lineno
    return ends


def _defines(line: str, name: str) -> bool:
    n = re.escape(name)
    return bool(re.match(rf"^\s*(async\s+)?def {n}\b|^\s*class {n}\b|^\s*{n}\s*[:=]", line))


def _range_problem(link: Link) -> str | None:
    """Why the link's range cannot be right whatever it describes, or None."""
    if not link.target.is_file():
        return f"{link.where()}\n    points into {link.target}, which does not exist"
    length = len(_lines(link.target))
    last = link.end if link.end is not None else link.start
    if not 1 <= link.start <= last <= length:
        return (
            f"{link.where()}\n    points at lines {link.start}-{last} of "
            f"{link.target.relative_to(REPO_ROOT)}, which has {length} lines"
        )
    return None


LINKS = _links()


def test_the_docs_have_line_links_to_check() -> None:
    # A parser that silently matched nothing would make the other tests pass vacuously.
    assert len(LINKS) >= 20, [link.where() for link in LINKS]
    assert any(link.symbol for link in LINKS)
    assert any(link.symbol is None for link in LINKS)


def test_every_line_link_stays_inside_its_file() -> None:
    problems = [p for link in LINKS if (p := _range_problem(link)) is not None]
    assert not problems, "stale line links:\n" + "\n".join(problems)


def test_symbol_links_cover_their_definitions() -> None:
    problems = []
    for link in LINKS:
        name = link.symbol
        if name is None or _range_problem(link) is not None:
            continue  # plain-text links; out-of-file ranges are reported by the test above
        rel = link.target.relative_to(REPO_ROOT)
        first = _lines(link.target)[link.start - 1]
        if not _defines(first, name):
            problems.append(
                f"{link.where()}\n    line {link.start} of {rel} does not define {name!r}: "
                f"{first.strip()!r}"
            )
            continue
        end = _definition_ends(link.target).get((link.start, name))
        if link.end is not None and end is not None and link.end != end:
            last = _lines(link.target)[link.end - 1]
            problems.append(
                f"{link.where()}\n    {name!r} runs over lines {link.start}-{end} of {rel}, but the "
                f"link ends at line {link.end}: {last.strip()!r}"
            )
    assert not problems, "line links that miss the symbol they name:\n" + "\n".join(problems)
