"""The docs' links into the source name code that exists, and carry no line numbers.

Docs link to symbols, not lines: [`LMModule._step`](../src/rnnlm/training/module.py) stays right when
code above it moves, where a `#L113-L126` anchor went stale silently and pinned every edit of a module
to an edit of the docs. These checks read files only (no model, no training), for README.md and
docs/*.md:

- no link into a .py file carries a line anchor (`#L12`, `#L12-L34`);
- a link whose text is a dotted name in backticks (`RNNLM`, `LMModule._step`, `metrics.perplexity`,
  whose first part may be the module's own name, or `src/rnnlm/inference/lm.py::LanguageModel.score`) names a
  function, class or assigned name that the linked file defines (at module level, or inside its
  classes: one dotted part per level);
- a link whose text is a file name in backticks (`data/layout.py`) links to that file;
- every link into a .py file, whatever its text ("scripts/"), points at a file that exists.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from conftest import REPO_ROOT

DOCS = sorted((REPO_ROOT / "docs").glob("*.md")) + [REPO_ROOT / "README.md"]

# [text](path/to/file.py) or [text](path/to/file.py#anchor); the text may wrap onto the next line.
LINK = re.compile(r"\[(?P<text>[^\[\]]+)\]\((?P<path>[^()\s#]+\.py)(?P<anchor>#[^()\s]*)?\)")
LINE_ANCHOR = re.compile(r"#L\d+(?:-L\d+)?")
DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
# `data/layout.py`: a file name in backticks.
FILE_TEXT = re.compile(r"`(?P<file>[\w./-]+\.py)`")
# `RNNLM`, `LMModule._step`, `metrics.perplexity`, `src/rnnlm/inference/lm.py::LanguageModel.score`.
SYMBOL_TEXT = re.compile(rf"`(?:(?P<file>[\w./-]+\.py)::)?(?P<name>{DOTTED})`")


@dataclass(frozen=True)
class Link:
    doc: Path
    doc_line: int
    markdown: str
    text: str
    target: Path
    anchor: str | None

    @property
    def symbol(self) -> str | None:
        """The dotted name the link's text names, or None for file names and plain text."""
        text = self.text.strip()
        if FILE_TEXT.fullmatch(text):
            return None
        m = SYMBOL_TEXT.fullmatch(text)
        return m["name"] if m else None

    @property
    def named_file(self) -> str | None:
        """The file the text names (`tasks.py`, or the part before `::`), or None."""
        text = self.text.strip()
        m = FILE_TEXT.fullmatch(text) or SYMBOL_TEXT.fullmatch(text)
        return m["file"] if m else None

    def where(self) -> str:
        doc = self.doc.relative_to(REPO_ROOT) if self.doc.is_relative_to(REPO_ROOT) else self.doc
        return f"{doc}:{self.doc_line}: {self.markdown}"


def _links_in(doc: Path) -> list[Link]:
    text = doc.read_text(encoding="utf-8")
    found = []
    for m in LINK.finditer(text):
        if "://" in m["path"]:
            continue  # a web page, not a file of this repository
        found.append(
            Link(
                doc=doc,
                doc_line=text.count("\n", 0, m.start()) + 1,
                markdown=" ".join(m[0].split()),
                text=" ".join(m["text"].split()),
                target=(doc.parent / m["path"]).resolve(),
                anchor=m["anchor"],
            )
        )
    return found


def _links() -> list[Link]:
    return [link for doc in DOCS if doc.exists() for link in _links_in(doc)]


def _assigned(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple | ast.List):
        return [name for elt in target.elts for name in _assigned(elt)]
    return []


def _collect(body: list[ast.stmt], prefix: str, out: set[str]) -> None:
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out.add(prefix + node.name)
        elif isinstance(node, ast.ClassDef):
            out.add(prefix + node.name)
            _collect(node.body, f"{prefix}{node.name}.", out)
        elif isinstance(node, ast.Assign):
            out.update(prefix + name for t in node.targets for name in _assigned(t))
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            out.update(prefix + name for name in _assigned(node.target))
        elif isinstance(node, ast.If | ast.Try | ast.With):
            # Definitions made under `if TYPE_CHECKING:`, `try: ... except ImportError:` and the like.
            for block in ("body", "orelse", "finalbody"):
                _collect(getattr(node, block, []), prefix, out)
            for handler in getattr(node, "handlers", []):
                _collect(handler.body, prefix, out)


@cache
def _symbols(path: Path) -> frozenset[str]:
    """The dotted names `path` defines: module-level ones and, nested by dots, its classes' members."""
    out: set[str] = set()
    _collect(ast.parse(path.read_text(encoding="utf-8")).body, "", out)
    return frozenset(out)


def _module_name(path: Path) -> str:
    return path.parent.name if path.name == "__init__.py" else path.stem


def _defines(path: Path, name: str) -> bool:
    symbols = _symbols(path)
    if name in symbols:
        return True
    first, _, rest = name.partition(".")
    return bool(rest) and first == _module_name(path) and rest in symbols


def _problem(link: Link) -> str | None:
    """What is wrong with the link, or None."""
    if link.anchor is not None and LINE_ANCHOR.fullmatch(link.anchor):
        return f"{link.where()}\n    has a line anchor: link to the symbol instead, without {link.anchor}"
    if not link.target.is_file():
        return f"{link.where()}\n    points at {link.target}, which does not exist"
    rel = link.target.relative_to(REPO_ROOT)
    named = link.named_file
    if named is not None and not f"/{rel.as_posix()}".endswith(f"/{named.removeprefix('./')}"):
        return f"{link.where()}\n    names {named} but points at {rel}"
    if link.symbol is not None and not _defines(link.target, link.symbol):
        return f"{link.where()}\n    {rel} defines no {link.symbol!r}"
    return None


LINKS = _links()


def test_the_docs_have_code_links_to_check() -> None:
    # A parser that silently matched nothing would make the other tests pass vacuously.
    assert len(LINKS) >= 20, [link.where() for link in LINKS]
    assert any(link.symbol for link in LINKS)
    assert any(link.symbol is None for link in LINKS)


def test_no_code_link_carries_a_line_anchor() -> None:
    anchored = [
        link.where()
        for link in LINKS
        if link.anchor is not None and LINE_ANCHOR.fullmatch(link.anchor)
    ]
    assert not anchored, (
        "line anchors go stale when code moves; link to the symbol, e.g. "
        "[`LMModule._step`](../src/rnnlm/training/module.py):\n" + "\n".join(anchored)
    )


def test_every_code_link_names_what_its_file_defines() -> None:
    problems = [p for link in LINKS if (p := _problem(link)) is not None]
    assert not problems, "broken code links:\n" + "\n".join(problems)


def test_the_check_refuses_a_missing_symbol(tmp_path: Path) -> None:
    # The checks above only pass honestly if a wrong name, a wrong file or an anchor is caught.
    doc = tmp_path / "doc.md"
    path = Path(os.path.relpath(REPO_ROOT / "src/rnnlm/models/rnn_lm.py", tmp_path)).as_posix()
    good = [
        "`RNNLM.nll`",
        "`rnn_lm.detach_hidden`",
        "`num_parameters`",
        "`rnn_lm.py::RNNLM`",
        "plain",
    ]
    bad = ["`RNNLM.no_such_method`", "`nll`", "`loss.RNNLM`", "`tasks.py`", "`lm.py::RNNLM`"]
    lines = [f"[{text}]({path})" for text in good + bad] + [f"[`RNNLM`]({path}#L57-L414)"]
    doc.write_text("\n".join(lines) + "\n", encoding="utf-8")
    links = _links_in(doc)
    assert len(links) == len(lines)
    refused = [link.text for link in links if _problem(link) is not None]
    assert refused == [*bad, "`RNNLM`"]
