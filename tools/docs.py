"""`python -m tools.docs`: regenerate the generated parts of the docs (`make docs`).

- docs/settings.md from the settings declarations (`python -m tasks.settings --markdown`);
- the README blocks between `<!-- BEGIN docs/NAME.md -->` and `<!-- END docs/NAME.md -->`
  from those files, so the README and the detailed docs cannot disagree;
- in the README and docs/*.md, the blocks between `<!-- BEGIN generated: NAME -->` and
  `<!-- END generated: NAME -->`, NAME one of GENERATORS: the README's index of docs/ (each page
  and its sections, linked), the inventory's settings table (`python -m inventories.aws
  --settings-table`), the Terraform variables and outputs (their `description`, `type` and
  `default` in terraform/*.tf, read with python-hcl2).

`--check` changes nothing and exits 1 when anything is stale (tests/test_docs.py runs it).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tools.firewall_tfvars import LISTS as GROUP_DATA_VARIABLES

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
BLOCK = re.compile(r"(<!-- BEGIN (docs/[\w.-]+) -->\n)(.*?)(<!-- END \2 -->)", re.DOTALL)
GENERATED = re.compile(
    r"(<!-- BEGIN generated: ([\w ]+) -->\n)(.*?)(<!-- END generated: \2 -->)", re.DOTALL
)


def command_output(*argv: str) -> str:
    """What a command of the repository prints (tools/ talks to the product through commands)."""
    return subprocess.run(
        [sys.executable, *argv], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout


def settings_markdown() -> str:
    return command_output("-m", "tasks.settings", "--markdown")


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


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def page_outline(text: str) -> tuple[str, list[str]]:
    """A page's title (its first heading) and the headings one level below it."""
    headings = [
        (len(m.group(1)), m.group(2).strip())
        for line, prose in prose_lines(text)
        if prose and (m := re.match(r"^(#+) (.*)$", line))
    ]
    if not headings:
        return "", []
    top, title = headings[0]
    return title, [name for level, name in headings[1:] if level == top + 1]


def docs_pages() -> list[Path]:
    """docs/*.md in reading order: alphabetical, the team's notes (UPPERCASE names) last."""
    return sorted((REPO / "docs").glob("*.md"), key=lambda p: (p.stem.isupper(), p.stem))


def docs_index() -> str:
    """One line per docs/ page: its title, linked, then its sections, linked."""
    lines = []
    for page in docs_pages():
        title, sections = page_outline(page.read_text())
        link = f"docs/{page.name}"
        line = f"- **[{title.replace('`', '')}]({link})**"
        if sections:
            names = (f"[{name.replace('`', '')}]({link}#{anchor(name)})" for name in sections)
            line += ": " + " · ".join(names)
        lines.append(line + "\n")
    return "".join(lines)


def terraform_blocks(kind: str) -> dict[str, dict[str, Any]]:
    """Every `variable` or `output` block of terraform/, variables.tf / outputs.tf first."""
    import hcl2
    from hcl2 import SerializationOptions

    options = SerializationOptions(
        with_comments=False,
        explicit_blocks=False,
        strip_string_quotes=True,
        preserve_heredocs=False,
    )
    files = sorted((REPO / "terraform").glob("*.tf"), key=lambda p: (p.stem != f"{kind}s", p.name))
    out: dict[str, dict[str, Any]] = {}
    for path in files:
        with path.open() as handle:
            for block in hcl2.load(handle, serialization_options=options).get(kind, []):
                out.update(block)
    return out


def _cell(text: str) -> str:
    """A description as one table cell: a heredoc's lines joined, `|` escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _tf_type(value: str) -> str:
    """`${map(object({a = number}))}` -> `map(object)`: the attributes are in the description."""
    text = re.sub(r"^\$\{(.*)\}$", r"\1", value)
    while (shorter := re.sub(r"object\(\{[^{}]*\}\)", "object", text)) != text:
        text = shorter
    return text


def _tf_default(name: str, body: dict[str, Any]) -> str:
    if "default" not in body:
        text = "**required**"
    elif body["default"] is None:
        text = "`null`"
    elif isinstance(body["default"], bool):
        text = f"`{str(body['default']).lower()}`"
    elif isinstance(body["default"], str) and body["default"]:
        text = f"`{body['default']}`"
    else:  # numbers, "", lists and maps: as Terraform would take them
        text = f"`{json.dumps(body['default'])}`"
    # tools/terraform.sh fills these from group_data/env_$ENVIRONMENT.py (tools/firewall_tfvars.py).
    return text + (" (from group data)" if name in GROUP_DATA_VARIABLES.values() else "")


def terraform_variables() -> str:
    rows = [
        f"| `{name}` | {_tf_type(body['type'])} | {_tf_default(name, body)} | "
        f"{_cell(body['description'])} |\n"
        for name, body in terraform_blocks("variable").items()
    ]
    return "| Variable | Type | Default | What |\n|---|---|---|---|\n" + "".join(rows)


def terraform_outputs() -> str:
    rows = [
        f"| `{name}` | {_cell(body['description'])} |\n"
        for name, body in terraform_blocks("output").items()
    ]
    return "| Output | What |\n|---|---|\n" + "".join(rows)


GENERATORS = {
    "docs index": docs_index,
    "inventory settings": lambda: command_output("-m", "inventories.aws", "--settings-table"),
    "terraform variables": terraform_variables,
    "terraform outputs": terraform_outputs,
}


def with_generated_blocks(text: str, cache: dict[str, str]) -> str:
    """`text` with each `generated:` block made anew (each generator runs once per `make docs`)."""

    def block(m: re.Match[str]) -> str:
        if m.group(2) not in cache:
            cache[m.group(2)] = GENERATORS[m.group(2)]()
        return m.group(1) + cache[m.group(2)] + m.group(4)

    return GENERATED.sub(block, text)


def wanted() -> dict[Path, str]:
    """Every generated file and the content it should have."""
    generated = {"docs/settings.md": settings_markdown()}
    cache: dict[str, str] = {}
    pages = {
        page: with_generated_blocks(page.read_text(), cache)
        for page in docs_pages()
        if page.relative_to(REPO).as_posix() not in generated
    }
    # A page pasted into the README is taken as regenerated, so one `make docs` is enough.
    sources = generated | {page.relative_to(REPO).as_posix(): text for page, text in pages.items()}
    readme = BLOCK.sub(
        lambda m: m.group(1) + included(m.group(2), sources) + m.group(4), README.read_text()
    )
    readme = with_generated_blocks(readme, cache)
    return {REPO / name: text for name, text in generated.items()} | pages | {README: readme}


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
