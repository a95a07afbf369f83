"""The chapters' text, read from the notebooks' JSON (nothing is executed): the rules of the
textbook edition (issue 20) that a reader sees on the page.

One test per rule, parametrised over the intro and the chapters (``-k 04_segvr`` runs one
chapter). Every failure lists each offending place as ``book/<chapter>.ipynb cell <i>
(<kind>) line <n>: ... [rule]``, cells counted from 0 as in the notebook's JSON.

- **sections**: a chapter's last three level-2 headings are ``## Summary``, ``## Exercises``
  and ``## References``, in that order; the summary holds 3-5 top-level bullets; the
  references hold at least one link;
- **line length**: no code line and no text output line (stream, ``text/plain``,
  ``text/markdown``) over 88 characters; images and HTML outputs are not text;
- **history**: no run names, commit ids, machine load, other jobs, earlier models, sessions,
  README or the build machines in markdown, code or outputs (:data:`HISTORY`);
- **shown source**: every block :func:`ivlite.book.show_source` printed equals
  :func:`ivlite.book.source_block` of the same object and markers, recomputed now;
- **title**: a chapter's first cell starts ``# N. Title`` with N its file's number and Title
  as in :data:`CHAPTER_TITLES`, and the intro's map links the chapter with exactly that text;
- **install cell**: the first code cell installs exactly ``ivlite @ git+<URL>`` on Colab, URL
  being pyproject's ``[project.urls] Repository``; any other address in it is that URL too;
- **FULL switch**: chapters 2-7 and 9 choose their mode with the same two lines
  (:data:`FULL_SWITCH`), and no other chapter has a switch.

Also here: unit tests of :func:`ivlite.book.source_block`.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
INTRO = BOOK / "intro.ipynb"
CHAPTERS = sorted(BOOK.glob("0*.ipynb"))
PAGES = [INTRO, *CHAPTERS]
LINE_LIMIT = 88
SUMMARY_BULLETS = (3, 5)
END_SECTIONS = ("Summary", "Exercises", "References")
SOURCE_FENCE = "```python\n"

CHAPTER_TITLES = {
    1: "The tiny world and its base model",
    2: "DDIM and editing: the partial chain",
    3: "Rewards: HPSv2 and its miniature",
    4: "SegVR: score a few frames, not all of them",
    5: "TAR: the centre frame counts most",
    6: "LoRA: a small, switchable change to a big UNet",
    7: "Putting it together: one InstructVideo run",
    8: "Results: what each part buys",
    9: "Scaling up: ModelScopeT2V and HPSv2 on a GPU",
}
"""The chapters' titles (issue 20, the textbook edition's list): the chapter's first heading
and the intro's map both read ``N. Title``."""

_HEX = r"(?=[0-9a-f]*\d)[0-9a-f]{7,40}"
HISTORY = {
    "run name": [r"\b[Rr]uns? [A-Z]\d?\b(?!\s*=)", r"\b[Qq]2\b", r"model_\d{3,}",
                 r"model_q\d+", r"_\d+s\b"],
    "commit id": [rf"\bcommit(?:ted)?\b\W{{0,3}}{_HEX}\b", rf"\b{_HEX}\W{{0,3}}commit\b",
                  r"-dirty\b", rf"`(?=[0-9a-f]*[a-f]){_HEX}`", r"\|\s*commit\s*\|"],
    "earlier model": [r"\b(?:earlier|previous|older|former) (?:\w+ )?models?\b",
                      r"\b(?:earlier|previous|older|former) presets?\b"],
    "machine load": [r"\bload averages?\b", r"\bmachine(?:'s)? load\b", r"\bload \(1 min\)",
                     r"\b(?:loaded|shared|quiet|busy) machines?\b",
                     r"\bmachine(?:'s)? (?:speed|drift)", r"\bmachine whose speed\b"],
    "other jobs": [r"\bother (?:\w+(?:'s|')? )?jobs?\b", r"\bother helpers\b",
                   r"(?i)\bthe other cores?\b"],
    "session": [r"(?<!Colab )(?<![Rr]estart )(?<![Rr]estart the )\bsessions?\b"],
    "README": [r"(?i)\breadme\b"],
    "build machines": [r"(?i)\bthis repository's (?:\w+ )?machines?\b",
                       r"(?i)\bmachines? that runs? this book\b",
                       r"(?i)\bbuild machines?\b"],
}
"""Words of the project's history and of its team, none of which a reader can use: pattern
lists by what they catch. A chapter says what is; provenance lives in the result files."""
HISTORY_RES = [(rule, re.compile(p)) for rule, pats in HISTORY.items() for p in pats]


# ----------------------------------------------------------------------------- reading


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def text(value) -> str:
    return "".join(value) if isinstance(value, list) else value


def page_id(path: Path) -> str:
    return path.stem


def where(path: Path, cell: int, kind: str, line: int | None = None) -> str:
    at = f"book/{path.name} cell {cell} ({kind})"
    return at if line is None else f"{at} line {line}"


def cell_texts(nb: dict, outputs: bool = True):
    """(cell index, kind, text) of every markdown and code cell and, with ``outputs``, every
    text output: stream, ``text/plain`` and ``text/markdown`` (images, HTML and widget
    state are not text a reader reads line by line)."""
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] in ("markdown", "code"):
            yield i, cell["cell_type"], text(cell["source"])
        if not outputs:
            continue
        for out in cell.get("outputs", []):
            if out["output_type"] == "stream":
                yield i, f"{out.get('name', 'stream')} output", text(out["text"])
            elif out["output_type"] in ("execute_result", "display_data"):
                for mime in ("text/plain", "text/markdown"):
                    if mime in out.get("data", {}):
                        yield i, f"{mime} output", text(out["data"][mime])


def markdown_lines(nb: dict):
    """(cell index, line number, line) of the markdown cells, outside fenced blocks."""
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        fence = None
        for n, line in enumerate(text(cell["source"]).splitlines(), 1):
            stripped = line.lstrip()
            mark = re.match(r"(`{3,}|~{3,})", stripped)
            if mark:
                if fence is None:
                    fence = mark.group(1)
                elif stripped.startswith(fence) and not stripped[len(fence):].strip():
                    fence = None
                continue
            if fence is None:
                yield i, n, line


def python_source(source: str) -> str:
    """A code cell's source as Python (IPython's ``%`` and ``!`` lines transformed)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def code_cells(nb: dict):
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            yield i, cell


def report(rule: str, path: Path, problems: list[str]) -> None:
    if problems:
        pytest.fail(f"{path.name}: {len(problems)} place(s) break the rule '{rule}':\n"
                    + "\n".join(f"  {p}" for p in problems), pytrace=False)


# ----------------------------------------------------------------------------- sections


def sections(nb: dict) -> list[tuple[str, int, int]]:
    """Level-2 headings in order: (title, cell index, line number)."""
    return [(line[3:].strip(), i, n) for i, n, line in markdown_lines(nb)
            if line.startswith("## ")]


def section_lines(nb: dict, title: str, following: str | None) -> list[str]:
    """The markdown lines from ``## title`` up to ``## following`` (or the end)."""
    lines, inside = [], False
    for _, _, line in markdown_lines(nb):
        if line.startswith("## "):
            name = line[3:].strip()
            if name == title:
                inside = True
                continue
            if inside and name == following:
                break
        if inside:
            lines.append(line)
    return lines


LINK = re.compile(r"\[[^\]]+\]\(\s*<?https?://[^)\s]+>?\s*\)|<https?://[^>\s]+>|https?://\S+")
BULLET = re.compile(r"^ {0,1}[-*+] +\S")


def section_problems(path: Path, nb: dict) -> list[str]:
    found = sections(nb)
    problems = []
    last = [title for title, _, _ in found[-3:]]
    if last != list(END_SECTIONS):
        listed = ", ".join(f"'## {t}' (cell {i} line {n})" for t, i, n in found[-4:]) or "none"
        problems.append(f"book/{path.name}: the last level-2 headings must be "
                        f"{', '.join('## ' + s for s in END_SECTIONS)} in this order; the "
                        f"last ones are {listed} [sections]")
    titles = [t for t, _, _ in found]
    if "Summary" in titles:
        summary = section_lines(nb, "Summary", "Exercises")
        bullets = sum(bool(BULLET.match(line)) for line in summary)
        i, n = next((i, n) for t, i, n in found if t == "Summary")
        lo, hi = SUMMARY_BULLETS
        if not lo <= bullets <= hi:
            problems.append(f"{where(path, i, 'markdown', n)}: '## Summary' holds {bullets} "
                            f"top-level bullets ('- ...'); {lo}-{hi} wanted [summary]")
    if "References" in titles:
        refs = section_lines(nb, "References", None)
        i, n = next((i, n) for t, i, n in found if t == "References")
        if not any(LINK.search(line) for line in refs):
            problems.append(f"{where(path, i, 'markdown', n)}: '## References' holds no "
                            f"link (https://...) [references]")
    return problems


@pytest.mark.parametrize("path", CHAPTERS, ids=page_id)
def test_chapter_ends_with_summary_exercises_references(path):
    report("Summary, Exercises, References at the end", path,
           section_problems(path, load(path)))


def test_section_check_on_a_made_up_chapter():
    def chapter(*markdown):
        return {"cells": [{"cell_type": "markdown", "source": m, "metadata": {}}
                          for m in markdown]}

    fake = Path("book/fake.ipynb")
    summary = "## Summary\n\n- one\n- two\n  - a sub-bullet\n* three\n"
    exercises = "## Exercises\n\n1. Change tau.\n\n```python\n## not a heading\n```\n"
    references = "## References\n\n- [DDIM](https://arxiv.org/abs/2010.02502)\n"
    good = chapter("# 2. Title\n\n## Checks\n", summary, exercises, references)
    assert section_problems(fake, good) == []
    wrong_order = chapter("# 2. Title", summary, references, exercises)
    [problem] = section_problems(fake, wrong_order)
    assert "'## References' (cell 2 line 1), '## Exercises' (cell 3 line 1)" in problem
    thin = chapter("# 2. Title", "## Summary\n\n- one\n- two\n", exercises,
                   "## References\n\nDDIM, arXiv 2010.02502.\n")
    problems = section_problems(fake, thin)
    assert [p.rsplit("[", 1)[1] for p in problems] == ["summary]", "references]"]
    assert problems[0].startswith("book/fake.ipynb cell 1 (markdown) line 1: '## Summary'")


# ----------------------------------------------------------------------------- line length


@pytest.mark.parametrize("path", PAGES, ids=page_id)
def test_code_and_output_lines_fit_the_column(path):
    problems = []
    for i, kind, body in cell_texts(load(path)):
        if kind == "markdown":
            continue
        for n, line in enumerate(body.splitlines(), 1):
            if len(line) > LINE_LIMIT:
                problems.append(f"{where(path, i, kind, n)}: {len(line)} characters > "
                                f"{LINE_LIMIT}: {line[:60]!r}... [line length]")
    report(f"code and output lines <= {LINE_LIMIT} characters", path, problems)


# ----------------------------------------------------------------------------- history


def history_hits(body: str) -> list[tuple[int, str, str]]:
    """(line number, rule, matched text) of every history word in ``body``; of overlapping
    matches on a line, the first (longest at a place) only."""
    hits = []
    for n, line in enumerate(body.splitlines(), 1):
        found = sorted(((m.start(), -m.end(), rule, m.group(0)) for rule, pattern
                        in HISTORY_RES for m in pattern.finditer(line)))
        end = -1
        for start, neg_end, rule, match in found:
            if start >= end:
                hits.append((n, rule, match))
                end = -neg_end
    return hits


@pytest.mark.parametrize("path", PAGES, ids=page_id)
def test_no_history_or_team_words(path):
    problems = [f"{where(path, i, kind, n)}: {found!r} [history: {rule}]"
                for i, kind, body in cell_texts(load(path))
                for n, rule, found in history_hits(body)]
    report("no run names, commits, machine load or earlier models", path, problems)


# ----------------------------------------------------------------------------- shown source


def notebook_imports(nb: dict) -> dict[str, str]:
    """Local name -> dotted module or object path, from every import of the code cells."""
    names: dict[str, str] = {}
    for _, cell in code_cells(nb):
        try:
            tree = ast.parse(python_source(text(cell["source"])))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        names[a.asname] = a.name
                    else:
                        head = a.name.split(".")[0]
                        names[head] = head
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def resolve(path: str):
    """The object at a dotted path: the longest importable module prefix, then attributes."""
    parts = path.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        for attr in parts[k:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"nothing of {path!r} can be imported")


def show_source_calls(source: str) -> list[ast.Call]:
    tree = ast.parse(python_source(source))
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and (getattr(node.func, "id", None) == "show_source"
                  or getattr(node.func, "attr", None) == "show_source")]
    return sorted(calls, key=lambda c: (c.lineno, c.col_offset))


def expected_block(call: ast.Call, imports: dict[str, str]) -> str:
    """``show_source``'s markdown for the call, recomputed from today's source."""
    from ivlite.book import source_block

    if len(call.args) != 1:
        raise ValueError("show_source takes one positional argument, the object")
    name = dotted(call.args[0])
    if name is None:
        raise ValueError(f"the object {ast.unparse(call.args[0])!r} is not a dotted name")
    head, _, rest = name.partition(".")
    full = imports.get(head, head) + (f".{rest}" if rest else "")
    kwargs = {}
    for kw in call.keywords:
        if kw.arg not in ("start", "end"):
            raise ValueError(f"show_source has no argument {kw.arg!r}")
        kwargs[kw.arg] = ast.literal_eval(kw.value)
    return SOURCE_FENCE + source_block(resolve(full), **kwargs) + "\n```"


def first_difference(shown: str, expected: str) -> str:
    a, b = shown.splitlines(), expected.splitlines()
    for n, (x, y) in enumerate(zip(a, b), 1):
        if x != y:
            return f"line {n} of the block shows {x!r}, the source now has {y!r}"
    return f"the block has {len(a)} lines, the source now {len(b)}"


def shown_source_problems(path: Path, nb: dict) -> list[str]:
    """Every source block of ``nb``'s outputs that is not what its cell's ``show_source``
    call prints today, and every such call that cannot be recomputed."""
    from ivlite.book import SOURCE_HEADER

    imports = notebook_imports(nb)
    problems = []
    for i, cell in code_cells(nb):
        source = text(cell["source"])
        shown = [text(out["data"]["text/markdown"]) for out in cell.get("outputs", [])
                 if "text/markdown" in out.get("data", {})]
        shown = [s for s in shown if s.startswith(SOURCE_FENCE + SOURCE_HEADER)]
        if "show_source" not in source and not shown:
            continue
        try:
            calls = show_source_calls(source)
        except SyntaxError as err:
            problems.append(f"{where(path, i, 'code')}: cannot parse the cell ({err}) "
                            f"[shown source]")
            continue
        expected = []
        for call in calls:
            try:
                expected.append(expected_block(call, imports))
            except Exception as err:  # any failure to recompute is the chapter's problem
                problems.append(f"{where(path, i, 'code', call.lineno)}: "
                                f"{ast.unparse(call)}: {type(err).__name__}: {err} "
                                f"[shown source]")
        if calls and not shown:
            problems.append(f"{where(path, i, 'code')}: show_source is called but the "
                            f"cell has no source output (not executed?) [shown source]")
        for block in shown:
            if block in expected:
                continue
            header = block.splitlines()[1]
            name = header.split(", ")[1:2]
            same = [e for e in expected if e.splitlines()[1].split(", ")[1:2] == name]
            why = (first_difference(block, same[0]) if same else
                   "no show_source call of the cell prints it")
            problems.append(f"{where(path, i, 'text/markdown output')}: the block "
                            f"'{header}' is not the current source: {why}; re-execute "
                            f"the cell [shown source]")
    return problems


@pytest.mark.parametrize("path", PAGES, ids=page_id)
def test_shown_source_is_the_current_source(path):
    report("shown source equals the current source", path,
           shown_source_problems(path, load(path)))


def _notebook(*cells) -> dict:
    """A notebook of (code source, markdown outputs) cells."""
    return {"cells": [{"cell_type": "code", "source": source, "metadata": {},
                       "outputs": [{"output_type": "display_data", "metadata": {},
                                    "data": {"text/markdown": md, "text/plain": "<md>"}}
                                   for md in outputs]}
                      for source, outputs in cells]}


def test_shown_source_check_compares_with_todays_source():
    from ivlite.book import source_block
    from ivlite.method import tar

    block = "```python\n" + source_block(tar.video_reward, start="c = ", end="return") + "\n```"
    stale = block.replace("c.sum(-1)", "c.sum(dim=-1)")
    assert stale != block
    fake = Path("book/fake.ipynb")
    good = _notebook(("from ivlite.method import tar\n", []),
                     ('show_source(tar.video_reward, start="c = ", end="return")', [block]))
    assert shown_source_problems(fake, good) == []
    imported = _notebook(("from ivlite.method.tar import video_reward as vr\n", []),
                         ('%matplotlib inline\nshow_source(vr, start="c = ", end="return")',
                          [block]))
    assert shown_source_problems(fake, imported) == []
    bad = _notebook(("from ivlite.method import tar\n", []),
                    ('show_source(tar.video_reward, start="c = ", end="return")', [stale]))
    [problem] = shown_source_problems(fake, bad)
    assert problem.startswith("book/fake.ipynb cell 1 (text/markdown output)")
    assert "c.sum(dim=-1)" in problem and problem.endswith("[shown source]")
    moved = _notebook(("from ivlite.method import tar\n", []),
                      ('show_source(tar.video_reward, start="nowhere")', [block]))
    problems = shown_source_problems(fake, moved)
    assert len(problems) == 2 and "start='nowhere' is not in the source" in problems[0]
    unrun = _notebook(("import ivlite.method.tar\n", []),
                      ("show_source(ivlite.method.tar.tar_weights)", []))
    [problem] = shown_source_problems(fake, unrun)
    assert "no source output (not executed?)" in problem


# ----------------------------------------------------------------------------- title and map


def chapter_number(path: Path) -> int:
    return int(path.name.split("_")[0])


def intro_map(nb: dict) -> dict[str, list[str]]:
    """Chapter file name -> link texts of the intro's markdown links to it."""
    links: dict[str, list[str]] = {}
    for _, _, line in markdown_lines(nb):
        for label, target in re.findall(r"\[([^\]]+)\]\(([^)\s]+)\)", line):
            name = target.split("#")[0].removeprefix("./").removeprefix("book/")
            if re.fullmatch(r"0\d_\w+\.(ipynb|md)", name):
                links.setdefault(name.replace(".md", ".ipynb"), []).append(label.strip())
    return links


@pytest.mark.parametrize("path", PAGES, ids=page_id)
def test_title_and_the_intros_map(path):
    nb = load(path)
    problems = []
    first = nb["cells"][0]
    first_line = text(first["source"]).splitlines()[0] if text(first["source"]) else ""
    if first["cell_type"] != "markdown" or not first_line.startswith("# "):
        problems.append(f"{where(path, 0, first['cell_type'], 1)}: the first cell must "
                        f"start with a level-1 heading, not {first_line!r} [title]")
    links = intro_map(load(INTRO))
    if path == INTRO:
        for chapter in CHAPTERS:
            if len(links.get(chapter.name, [])) != 1:
                problems.append(f"book/intro.ipynb: the map links {chapter.name} "
                                f"{len(links.get(chapter.name, []))} times; once wanted "
                                f"[title: intro map]")
        report("the intro's map links every chapter once", path, problems)
        return
    number = chapter_number(path)
    title = first_line[2:].strip()
    wanted = f"{number}. {CHAPTER_TITLES.get(number, '<not in CHAPTER_TITLES>')}"
    if not re.fullmatch(rf"{number}\. \S.*", title):
        problems.append(f"{where(path, 0, 'markdown', 1)}: title {title!r} must read "
                        f"'# {number}. Title' [title: number]")
    if title != wanted:
        problems.append(f"{where(path, 0, 'markdown', 1)}: title {title!r}; the book's list "
                        f"(issue 20) has {wanted!r} [title: list]")
    mapped = links.get(path.name, [])
    if mapped != [title]:
        problems.append(f"book/intro.ipynb map: links {path.name} as {mapped}; the "
                        f"chapter's title is {title!r} [title: intro map]")
    report("'# N. Title', the same in the intro's map", path, problems)


# ----------------------------------------------------------------------------- install cell


def repository_url() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["urls"]["Repository"]


def test_repository_url_is_an_https_address():
    url = repository_url()
    assert re.fullmatch(r"https://[\w.-]+/[\w.-]+/[\w.-]+", url), url


@pytest.mark.parametrize("path", PAGES, ids=page_id)
def test_install_cell_installs_the_repository(path):
    url = repository_url()
    wanted = f"ivlite @ git+{url}"
    cells = list(code_cells(load(path)))
    problems = []
    if not cells:
        problems.append(f"book/{path.name}: no code cell [install]")
        report("install cell", path, problems)
    i, cell = cells[0]
    lines = text(cell["source"]).splitlines()
    if not any(re.match(r'if "google\.colab" in sys\.modules:', line) for line in lines):
        problems.append(f"{where(path, i, 'code')}: the first code cell must install under "
                        f"'if \"google.colab\" in sys.modules:' [install]")
    pips = [(n, line) for n, line in enumerate(lines, 1)
            if re.match(r"\s*[%!]pip install\b", line)]
    if len(pips) != 1:
        problems.append(f"{where(path, i, 'code')}: {len(pips)} '%pip install' lines; one "
                        f"wanted [install]")
    for n, line in pips:
        args = shlex.split(line.strip().split("install", 1)[1])
        packages = [a for a in args if not a.startswith("-")]
        if packages != [wanted]:
            problems.append(f"{where(path, i, 'code', n)}: installs {packages}; exactly "
                            f"[{wanted!r}] wanted (pyproject's [project.urls] Repository) "
                            f"[install]")
    for n, line in enumerate(lines, 1):
        for address in re.findall(r"https?://[^\s\"']+", line):
            if address.removesuffix(".git") != url:
                problems.append(f"{where(path, i, 'code', n)}: {address} is not the "
                                f"repository's address {url} [install]")
    report("the install cell installs pyproject's Repository", path, problems)


# ----------------------------------------------------------------------------- results chapter

RESULTS_CHAPTER_ASSERTS = 15
"""At most this many ``assert`` statements in chapter 8 (issue 20: a results chapter a reader
follows in ten minutes checks a few facts, not every number)."""


def count_asserts(nb: dict) -> int:
    """``assert`` statements in the code cells, IPython's ``%`` and ``!`` lines left out."""
    count = 0
    for _, cell in code_cells(nb):
        code = "\n".join(line for line in text(cell["source"]).splitlines()
                         if not line.lstrip().startswith(("%", "!")))
        count += sum(isinstance(node, ast.Assert) for node in ast.walk(ast.parse(code)))
    return count


def test_the_results_chapter_checks_a_few_facts():
    path = BOOK / "08_ablations.ipynb"
    n = count_asserts(load(path))
    assert 0 < n <= RESULTS_CHAPTER_ASSERTS, f"{path.name}: {n} assert statements"
    assert count_asserts(_notebook(("assert 1\n%time x\nfor i in ():\n    assert i", []))) == 2


# ----------------------------------------------------------------------------- FULL switch

FULL_SWITCH = ("FULL = False  # True on a CUDA GPU (Colab): ModelScopeT2V + HPSv2, one 5.4 GB "
               "download",
               'mode = choose_mode(FULL)      # "tiny" or "full"')
"""The two lines that choose a chapter's mode, the same on every page that has the switch."""
FULL_CHAPTERS = (2, 3, 4, 5, 6, 7, 9)


@pytest.mark.parametrize("path", CHAPTERS, ids=page_id)
def test_full_switch_reads_the_same_everywhere(path):
    switches = [(i, n) for i, cell in code_cells(load(path))
                for n, line in enumerate(text(cell["source"]).splitlines(), 1)
                if re.match(r"FULL\s*=", line)]
    problems = []
    if chapter_number(path) not in FULL_CHAPTERS:
        problems += [f"{where(path, i, 'code', n)}: a FULL switch in a tiny-world-only "
                     f"chapter [switch]" for i, n in switches]
    elif len(switches) != 1:
        problems.append(f"book/{path.name}: {len(switches)} 'FULL =' lines; one wanted "
                        f"[switch]")
    else:
        i, n = switches[0]
        lines = text(dict(code_cells(load(path)))[i]["source"]).splitlines()
        if tuple(lines[n - 1:n + 1]) != FULL_SWITCH:
            problems.append(f"{where(path, i, 'code', n)}: {lines[n - 1:n + 1]}; the book's "
                            f"switch is {list(FULL_SWITCH)} [switch]")
    report("one FULL switch, worded as on every page", path, problems)


# ----------------------------------------------------------------------------- source_block


def _example(a, b):
    """Docstring."""
    total = a + b  # the sum
    if total > 10:
        total = 10
    return total


def test_source_block_prints_the_whole_function_with_its_header():
    import inspect

    from ivlite.book import SOURCE_HEADER, source_block
    from ivlite.method.tar import tar_weights

    block = source_block(tar_weights)
    lines, first = inspect.getsourcelines(tar_weights)
    header, *body = block.splitlines()
    assert header == (f"{SOURCE_HEADER}ivlite/method/tar.py, tar_weights, "
                      f"lines {first}-{first + len(lines) - 1}")
    assert body == [line.rstrip("\n") for line in lines]


def test_source_block_excerpts_between_markers():
    import inspect

    from ivlite.book import source_block

    lines, first = inspect.getsourcelines(_example)
    block = source_block(_example, start="total = a + b", end="return total")
    header, *body = block.splitlines()
    assert body == ["    total = a + b  # the sum", "    if total > 10:",
                    "        total = 10", "    return total"]
    assert header.endswith(f"test_book_text.py, _example, lines {first + 2}-{first + 5}")
    # start alone runs to the end; end alone starts at the def line
    assert source_block(_example, start="if total").splitlines()[1:] == body[1:]
    assert source_block(_example, end='"""Docstring').splitlines()[1:] == [
        "def _example(a, b):", '    """Docstring."""']
    # the end marker is searched from the start line on: 'total' also occurs before it
    assert source_block(_example, start="if total", end="total").splitlines()[1:] == [
        "    if total > 10:"]


def test_source_block_refuses_a_marker_it_cannot_find():
    from ivlite.book import source_block

    with pytest.raises(ValueError, match=r"start='nowhere' is not in the source of _example"):
        source_block(_example, start="nowhere")
    with pytest.raises(ValueError, match=r"end='nowhere' is not in the source of _example"):
        source_block(_example, end="nowhere")
    with pytest.raises(ValueError, match=r"end='Docstring' is not in the source"):
        source_block(_example, start="return", end="Docstring")


def test_show_source_prints_the_block_as_python_markdown():
    from ivlite.book import show_source, source_block
    from ivlite.method.tar import reward_loss

    shown = show_source(reward_loss, end="return")
    assert shown.data == "```python\n" + source_block(reward_loss, end="return") + "\n```"


def test_the_history_patterns_catch_and_spare():
    caught = ["On run Q2 the", "(run C, EMA at step 4700)", "q2 = load()",
              "baselines_model_4700_lr1e-3.json", "ablations_tiny_baselines_200s.json",
              "commit 3a5b2fd", "`5b63b76-dirty`", "| file | commit | machine |",
              "on the earlier models", "the previous model", "load average 4-7",
              "machine load", "while other jobs shared it", "other helpers' jobs",
              "the session's tests", "see the README", "`7834fbb`", "`tools/tiny_world/README.md`",
              "No machine that runs this book can download",
              "this repository's machines", "a loaded machine",
              "a machine whose speed drifted", "the machine's drift"]
    spared = ["load the base model", "the committed results", "Restart session on Colab",
              "run the chain", "Run the cell", "the model's run mode", "ModelScope",
              "S = 4 segments, F = 16", "a Colab session", "sha256 checksums",
              "the previous chapter", "the repository's benchmarks/results/",
              "on a machine with a GPU", "run S = 4", "`1000000` steps"]
    missed = [s for s in caught if not history_hits(s)]
    wrong = [(s, history_hits(s)) for s in spared if history_hits(s)]
    assert not missed and not wrong, (missed, wrong)
