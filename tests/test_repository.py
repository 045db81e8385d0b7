"""The committed tree itself: no file carries the markers of an unresolved merge."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# git's own markers, alone at the start of a line (seven characters, then a space or the line's end)
_MARKER = re.compile(r"^(<{7} |={7}$|>{7} )", re.MULTILINE)


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    paths = [ROOT / name for name in listed.split("\0") if name]
    return [
        p for p in paths if p.suffix in {".py", ".md", ".txt", ".toml", ".json", ".html", ""} and p.is_file()
    ]


def test_no_file_holds_a_merge_conflict_marker() -> None:
    found = []
    for path in _tracked_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if _MARKER.search(text):
            found.append(str(path.relative_to(ROOT)))
    assert not found, f"unresolved merge markers in: {', '.join(found)}"


def test_the_check_sees_a_marker() -> None:
    assert _MARKER.search("text\n<<<<<<< HEAD\nours\n=======\ntheirs\n>>>>>>> main\n")
    assert not _MARKER.search("a line with ======= inside\n<<<<<<<< eight is no marker")
