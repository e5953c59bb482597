"""The README is the front door, not the manual: it stays short, and every relative link in
it, in docs/ and in the folder READMEs of jobs/ and deploy/k8s/ leads somewhere (a file that
exists, and the heading a link names)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from mlflow_lab.settings import REPO_ROOT

README_MAX_LINES = 150
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCED_BLOCK = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:
# Folders with a README in every folder saying what is there (and linking into docs/).
README_FOLDERS = ("jobs", "deploy/k8s")


def documents(root: Path) -> list[Path]:
    readmes = [readme for folder in README_FOLDERS for readme in sorted((root / folder).glob("**/README.md"))]
    return [root / "README.md", *sorted((root / "docs").glob("*.md")), *readmes]


def prose(text: str) -> str:
    """The text without code: a `[x](y)` or a `# comment` in a code block is neither a link
    nor a heading."""
    return CODE_SPAN.sub("", FENCED_BLOCK.sub("", text))


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(document: Path) -> set[str]:
    lines = FENCED_BLOCK.sub("", document.read_text()).splitlines()
    return {anchor(line.lstrip("#")) for line in lines if line.startswith("#")}


def broken_links(document: Path) -> list[str]:
    broken = []
    for target in LINK.findall(prose(document.read_text())):
        if EXTERNAL.match(target):
            continue
        path, _, fragment = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target} (no such heading)")
    return broken


def check_docs(root: Path) -> None:
    length = len((root / "README.md").read_text().splitlines())
    assert length <= README_MAX_LINES, f"README.md has {length} lines (at most {README_MAX_LINES}): move the detail into docs/"
    broken = {str(doc.relative_to(root)): links for doc in documents(root) if (links := broken_links(doc))}
    assert not broken, f"links that lead nowhere: {broken}"


def test_the_readme_is_short_and_every_link_resolves():
    check_docs(REPO_ROOT)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    shutil.copy(REPO_ROOT / "README.md", tmp_path)
    for folder in ("docs", "bench/results", *README_FOLDERS):  # the documents and what they link to
        shutil.copytree(REPO_ROOT / folder, tmp_path / folder)
    return tmp_path


def test_a_missing_file_fails(copy):
    (copy / "docs" / "model-api.md").unlink()
    with pytest.raises(AssertionError, match=r"'README.md': \['docs/model-api.md \(no such file\)'"):
        check_docs(copy)


def test_a_moved_heading_fails(copy):
    lifecycle = copy / "docs" / "lifecycle.md"
    lifecycle.write_text(lifecycle.read_text().replace("## Promotion", "## Promoting"))
    with pytest.raises(AssertionError, match=r"docs/lifecycle.md#promotion \(no such heading\)"):
        check_docs(copy)


def test_a_long_readme_fails(copy):
    readme = copy / "README.md"
    readme.write_text(readme.read_text() + "journal line\n" * README_MAX_LINES)
    with pytest.raises(AssertionError, match=r"README.md has \d+ lines \(at most 150\)"):
        check_docs(copy)


@pytest.mark.parametrize(
    ("readme", "link"),
    [
        ("jobs/kubernetes/README.md", "../../deploy/k8s/components/batch-scoring/README.md"),
        ("deploy/k8s/components/batch-scoring/README.md", "../../../../jobs/kubernetes/README.md"),
    ],
)
def test_a_folder_readme_with_a_miscounted_link_fails(copy, readme, link):
    document = copy / readme
    miscounted = link.removeprefix("../")
    document.write_text(document.read_text().replace(f"]({link})", f"]({miscounted})"))
    with pytest.raises(AssertionError, match=re.escape(f"'{readme}': ['{miscounted} (no such file)']")):
        check_docs(copy)
