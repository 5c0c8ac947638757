"""`python -m tools.docs`: regenerate the generated parts of the docs (`make docs`).

- docs/settings.md from the settings declarations (`python -m tasks.settings --markdown`);
- the README blocks between `<!-- BEGIN docs/NAME.md -->` and `<!-- END docs/NAME.md -->`
  from those files, so the README and the detailed docs cannot disagree.

`--check` changes nothing and exits 1 when anything is stale (tests/test_docs.py runs it).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
BLOCK = re.compile(r"(<!-- BEGIN (docs/[\w.-]+) -->\n)(.*?)(<!-- END \2 -->)", re.DOTALL)


def settings_markdown() -> str:
    return subprocess.run(
        [sys.executable, "-m", "tasks.settings", "--markdown"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_HEADING = re.compile(r"^(#+) ")


def prose_lines(text: str) -> list[tuple[str, bool]]:
    """Each line with whether it is prose (outside a fenced code block): a `# comment` in a
    shell block is not a heading."""
    out, fence = [], ""
    for line in text.splitlines(keepends=True):
        match = _FENCE.match(line)
        if match and (not fence or match.group(1) == fence):
            fence = "" if fence else match.group(1)
            out.append((line, False))
        else:
            out.append((line, not fence))
    return out


def included(name: str, generated: dict[str, str]) -> str:
    """A docs file as a README section (its top heading at level 2); generated text first."""
    text = generated.get(name) or (REPO / name).read_text()
    lines = prose_lines(text)
    levels = [len(m.group(1)) for line, prose in lines if prose and (m := _HEADING.match(line))]
    shift = 2 - min(levels, default=2)
    if shift:
        text = "".join(
            _HEADING.sub(lambda m: "#" * (len(m.group(1)) + shift) + " ", line) if prose else line
            for line, prose in lines
        )
    return text if text.endswith("\n") else text + "\n"


def wanted() -> dict[Path, str]:
    """Every generated file and the content it should have."""
    generated = {"docs/settings.md": settings_markdown()}
    readme = BLOCK.sub(
        lambda m: m.group(1) + included(m.group(2), generated) + m.group(4), README.read_text()
    )
    return {REPO / name: text for name, text in generated.items()} | {README: readme}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail on stale docs, change nothing")
    args = parser.parse_args()
    stale = [path for path, text in wanted().items() if path.read_text() != text]
    if args.check:
        if stale:
            names = ", ".join(str(p.relative_to(REPO)) for p in stale)
            print(f"stale: {names}: run `make docs`", file=sys.stderr)
        return 1 if stale else 0
    for path, text in wanted().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
