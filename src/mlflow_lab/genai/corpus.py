"""The documents the app answers from: the lab's Markdown docs, cut into sections."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from mlflow_lab.errors import LabError
from mlflow_lab.settings import REPO_ROOT

DOCS = REPO_ROOT / "docs"
# A section longer than this is cut at paragraph breaks: one passage should fit a prompt's
# context several times over, and a static embedding of a very long text says little.
MAX_CHARS = 1500
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


@dataclass(frozen=True)
class Passage:
    source: str  # the file's name, e.g. "lifecycle.md"
    title: str  # the section's heading
    text: str  # the section's text, heading included

    @property
    def anchor(self) -> str:
        """`lifecycle.md#promotion`: where a reader finds it (GitHub's heading anchors)."""
        slug = re.sub(r"[^\w\- ]", "", self.title.lower()).strip().replace(" ", "-")
        return f"{self.source}#{slug}"

    @property
    def for_embedding(self) -> str:
        """What is embedded: the file's and the section's names lead, as a reader scans them
        (measured on the workshop's questions: more first hits than the text alone)."""
        return f"{self.source.removesuffix('.md')} {self.title}\n{self.text}"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def split_markdown(source: str, text: str, max_chars: int = MAX_CHARS) -> list[Passage]:
    """One passage per section (a heading and what follows it up to the next heading); code
    fences are kept whole, so a `#` comment inside one is not taken for a heading."""
    sections: list[tuple[str, list[str]]] = []
    title, lines, fenced = source, list[str](), False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        heading = None if fenced else _HEADING.match(line)
        if heading:
            sections.append((title, lines))
            title, lines = heading.group(2), []
        lines.append(line)
    sections.append((title, lines))
    passages: list[Passage] = []
    for title, lines in sections:
        body = "\n".join(lines).strip()
        if len(body.splitlines()) <= 1 and _HEADING.match(body or "#"):  # a heading with nothing under it
            continue
        passages.extend(Passage(source, title, part) for part in _cut(body, max_chars))
    return passages


def _cut(body: str, max_chars: int) -> list[str]:
    parts, current = [], ""
    for paragraph in body.split("\n\n"):
        if current and len(current) + len(paragraph) + 2 > max_chars:
            parts.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    return [*parts, current] if current else parts


def load(folder: Path = DOCS) -> list[Passage]:
    """Every section of every `*.md` file in `folder`, in file order."""
    files = sorted(Path(folder).glob("*.md"))
    if not files:
        raise LabError(f"no Markdown documents in {folder}: the app answers from the lab's docs/ folder (--docs names another).")
    return [passage for path in files for passage in split_markdown(path.name, path.read_text(encoding="utf-8"))]
