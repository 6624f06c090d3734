"""The repository stands alone: no file of the code, tests, tools or build reaches for a folder
beside the checkout, and every section of docs/ARCH.md or docs/DESIGN.md that a comment cites
exists."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
THIS = Path(__file__).resolve()
CHECKED_DIRS = ("csrc/", "python/", "tests/", "tools/", ".ci/")
CHECKED_FILES = ("CMakeLists.txt", "pyproject.toml")
SOURCE_SUFFIXES = {".py", ".pyi", ".c", ".cc", ".cpp", ".h", ".hpp", ".cu", ".cuh", ".inc", ".sh",
                   ".txt", ".toml", ".cmake", ".md", ""}

# The sibling folder's name, assembled so that this file does not contain what it looks for.
_S = "sha" + "red"
_Q = "[\"']"
OUTSIDE_PATTERNS = [
    (re.compile(re.escape("..") + r"[/\\]" + _S + r"\b"), "a path into .." + "/" + _S),
    (re.compile(r"/\s*" + _Q + _S + _Q), "a path built as ... / '" + _S + "'"),
    (re.compile(_Q + _S + _Q + r"\s*/"), "a path built as '" + _S + "' / ..."),
    (re.compile(r"\bjoin\([^)\n]*" + _Q + _S + _Q), "os.path.join(..., '" + _S + "')"),
    (re.compile(r"\b" + _S + r"/(assets|tools|hooks|ARCH|DESIGN|STYLE)\b"), "a file of the " + _S + " folder"),
]


def repository_files() -> list[str]:
    """Paths (relative to the root) of the tracked files and the new ones git does not ignore."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    run = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True)
    if run.returncode != 0:
        pytest.skip(f"not a git checkout: {run.stderr.decode(errors='replace').strip()}")
    names = sorted({n for n in run.stdout.decode("utf-8", errors="replace").split("\0") if n})
    return [n for n in names if (ROOT / n).is_file()]


def checked(name: str) -> bool:
    return name in CHECKED_FILES or name.startswith(CHECKED_DIRS)


def test_nothing_reads_outside_the_repository():
    problems = []
    for name in repository_files():
        path = ROOT / name
        if not checked(name) or path.resolve() == THIS:
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            what = next((w for pattern, w in OUTSIDE_PATTERNS if pattern.search(line)), None)
            if what:
                problems.append(f"{name}:{number}: {what}: {line.strip()[:120]}")
    assert not problems, ("files reach outside the repository (copy what they need into it, "
                          "e.g. tests/assets/):\n" + "\n".join(problems))


# docs/ARCH.md headings are "## §N Title"; a citation is "§N", "§N-M", "§N step K" or
# '§N "Name"' in any source file that mentions ARCH.md.
HEADING = re.compile(r"^## §(\d+)\b", re.M)
CITATION = re.compile(r"§\s*(\d+)(?:\s*[-–]\s*§?\s*(\d+))?(?:\s+step\s+(\d+)|\s+\"([^\"]+)\")?")


def arch_sections() -> dict[int, str]:
    """{N: the text of section §N, heading included} of docs/ARCH.md."""
    text = (ROOT / "docs" / "ARCH.md").read_text(encoding="utf-8")
    sections = {}
    for chunk in re.split(r"^(?=## )", text, flags=re.M):
        m = HEADING.match(chunk)
        if m:
            sections[int(m.group(1))] = chunk
    return sections


def test_arch_headings_are_numbered_in_order():
    numbers = [int(n) for n in HEADING.findall((ROOT / "docs" / "ARCH.md").read_text(encoding="utf-8"))]
    assert numbers == list(range(1, len(numbers) + 1)), numbers


def test_every_cited_arch_section_exists():
    sections = arch_sections()
    problems, cited = [], 0
    for name in repository_files():
        path = ROOT / name
        if (not name.startswith(CHECKED_DIRS) or path.suffix not in SOURCE_SUFFIXES
                or path.resolve() == THIS or name.startswith("tests/assets/")):
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        if "ARCH.md" not in text:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for m in CITATION.finditer(line):
                first = int(m.group(1))
                last = int(m.group(2)) if m.group(2) else first
                for section in range(first, last + 1):
                    cited += 1
                    where = f"{name}:{number}: §{section}"
                    if section not in sections:
                        problems.append(f"{where}: docs/ARCH.md has no such section")
                        continue
                    body = sections[section]
                    step, label = m.group(3), m.group(4)
                    if step and not re.search(rf"^\s*{step}\. ", body, re.M):
                        problems.append(f"{where} step {step}: the section has no step {step}")
                    if label and label.lower() not in body.lower():
                        problems.append(f'{where} "{label}": not in the section')
    assert cited > 0, "no ARCH.md citation found: is the pattern still right?"
    assert not problems, "\n".join(problems)


def test_every_cited_design_section_exists():
    headings = {h.strip().lower() for h in re.findall(r"^##+ (.+)$", (ROOT / "docs" / "DESIGN.md")
                                                       .read_text(encoding="utf-8"), re.M)}
    problems = []
    for name in repository_files():
        path = ROOT / name
        if not name.startswith(CHECKED_DIRS) or path.suffix not in SOURCE_SUFFIXES or path.resolve() == THIS:
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            for title in re.findall(r"DESIGN\.md\s+\"([^\"]+)\"", line):
                if title.strip().lower() not in headings:
                    problems.append(f'{name}:{number}: DESIGN.md "{title}": no such heading')
    assert not problems, "\n".join(problems)
