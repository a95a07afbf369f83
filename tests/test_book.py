"""The book: its table of contents, its chapters' hygiene, a warning-free build, and every built
chapter opened in a headless browser.

The chapters themselves are executed by nbval (``book/`` is a pytest test path): nothing here
runs a notebook. The book is built once per session (``execute_notebooks: "off"``, so the build
renders the committed, nbval-checked outputs) and the browser tests read that build.

The browser tests need Debian's ``chromium`` and ``chromium-driver`` (the README's test command
installs them). Without them they fail, so that a test run never passes silently without its
browser check; ``IVLITE_SKIP_BROWSER=1`` skips them instead, for a machine that cannot have them.
"""

from __future__ import annotations

import ast
import base64
import functools
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
MAX_NOTEBOOK_BYTES = 2 * 1024 * 1024
# A chapter may define a widget callback or a small helper: at most this many statements that are
# not plotting calls (on plt, fig, ax...). Anything bigger belongs in ivlite.viz or ivlite.book.
MAX_FUNCTION_STATEMENTS = 8
PLOTTING_NAMES = re.compile(r"^(plt|fig|figure|ax|axes|ax_\w+|\w+_ax)$")


def toc_files() -> list[str]:
    """Every ``file:`` of _toc.yml (root, chapters, parts, sections), in order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    found: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    found.append(node[key])
            for value in node.values():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return found


NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
NOTEBOOK_IDS = [p.stem for p in NOTEBOOKS]


def read_notebook(path: Path) -> dict:
    return json.loads(path.read_text())


def code_sources(nb: dict) -> list[str]:
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in nb["cells"] if c["cell_type"] == "code"]


def outputs(nb: dict):
    for cell in nb["cells"]:
        yield from cell.get("outputs", [])


def gif_payloads(nb: dict) -> list[bytes]:
    """The inline GIF animations (``ivlite.viz.video_html``) among a notebook's outputs."""
    found = []
    for out in outputs(nb):
        html = out.get("data", {}).get("text/html", "")
        html = "".join(html) if isinstance(html, list) else html
        found += [base64.b64decode(m) for m in re.findall(r"data:image/gif;base64,([A-Za-z0-9+/=]+)", html)]
    return found


def png_count(nb: dict) -> int:
    return sum("image/png" in out.get("data", {}) for out in outputs(nb))


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def logic_statements(func: ast.FunctionDef) -> int:
    """Simple statements of a function, not counting calls on matplotlib objects."""
    count = 0
    for node in ast.walk(func):
        if isinstance(node, ast.stmt) and not isinstance(node, (
                ast.FunctionDef, ast.AsyncFunctionDef, ast.For, ast.While, ast.If, ast.With,
                ast.Try)):
            value = getattr(node, "value", None)
            plotting = value is not None and PLOTTING_NAMES.match(_root_name(value) or "")
            count += not plotting
    return count


def chapter_title(nb: dict) -> str:
    """The text of the notebook's first level-1 heading."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    raise AssertionError("no level-1 heading")


# ----------------------------------------------------------------------------- the sources


def test_toc_lists_exactly_the_notebooks():
    listed = toc_files()
    assert len(listed) == len(set(listed)), f"_toc.yml lists a file twice: {listed}"
    missing = [f for f in listed if not (ROOT / f"{f}.ipynb").is_file()]
    assert not missing, f"_toc.yml lists notebooks that do not exist: {missing}"
    unlisted = sorted(str(p.relative_to(ROOT).with_suffix("")) for p in NOTEBOOKS
                      if str(p.relative_to(ROOT).with_suffix("")) not in listed)
    assert not unlisted, f"notebooks in book/ missing from _toc.yml: {unlisted}"


def test_build_renders_committed_outputs():
    """The build must not execute the chapters: nbval checks their committed outputs."""
    execute = yaml.safe_load((ROOT / "_config.yml").read_text())["execute"]
    assert execute["execute_notebooks"] == "off"
    assert execute["allow_errors"] is False and execute["timeout"] >= 600


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NOTEBOOK_IDS)
def test_notebook_is_small(path):
    size = path.stat().st_size
    assert size < MAX_NOTEBOOK_BYTES, f"{path.name} is {size / 2**20:.2f} MiB (limit 2 MiB)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NOTEBOOK_IDS)
def test_chapter_imports_ivlite_and_holds_no_model_code(path):
    """Chapters drive ivlite; model and algorithm code lives in the package, not in a notebook.

    Checked on the code cells (IPython syntax turned into Python first): ivlite is imported; no
    class is defined; no function holds more than MAX_FUNCTION_STATEMENTS statements besides
    plotting calls; no function computes a backward pass; no torch.nn layer is built.
    """
    import torch
    from IPython.core.inputtransformer2 import TransformerManager

    layers = {name for name in dir(torch.nn) if isinstance(getattr(torch.nn, name), type)
              and issubclass(getattr(torch.nn, name), torch.nn.Module)} | {"Parameter"}
    transform = TransformerManager().transform_cell
    imports_ivlite = False
    for source in code_sources(read_notebook(path)):
        tree = ast.parse(transform(source))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imports_ivlite |= any(a.name.split(".")[0] == "ivlite" for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                imports_ivlite |= (node.module or "").split(".")[0] == "ivlite"
            elif isinstance(node, ast.ClassDef):
                pytest.fail(f"{path.name} defines class {node.name}: move it into ivlite")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = logic_statements(node)
                assert n <= MAX_FUNCTION_STATEMENTS, (
                    f"{path.name}: function {node.name} has {n} statements; put helpers in "
                    f"ivlite/viz.py or ivlite/book.py")
                assert "backward" not in {getattr(c.func, "attr", None) for c in ast.walk(node)
                                          if isinstance(c, ast.Call)}, (
                    f"{path.name}: function {node.name} runs a backward pass: training code "
                    f"belongs in ivlite")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in layers, (
                    f"{path.name} builds a torch.nn.{node.func.attr}: model code belongs in ivlite")
    assert imports_ivlite, f"{path.name} does not import ivlite"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NOTEBOOK_IDS)
def test_chapter_installs_ivlite_on_colab(path):
    """Right after the title, a cell installs ivlite on Colab (and nothing elsewhere: no output)."""
    cells = read_notebook(path)["cells"]
    first_code = next(c for c in cells if c["cell_type"] == "code")
    source = "".join(first_code["source"])
    assert '"google.colab" in sys.modules' in source and "pip install" in source, (
        f"{path.name}: the first code cell must install ivlite on Colab")
    assert first_code.get("outputs", []) == [], f"{path.name}: the install cell printed something"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NOTEBOOK_IDS)
def test_videos_are_animations(path):
    """Every inline GIF of a chapter's outputs decodes and has more than one frame."""
    from PIL import Image

    for data in gif_payloads(read_notebook(path)):
        image = Image.open(io.BytesIO(data))
        assert image.format == "GIF" and getattr(image, "n_frames", 1) > 1


# ----------------------------------------------------------------------------- ivlite.book


def test_run_mode(monkeypatch):
    import ivlite.book as book

    for value, expected in (("tiny", "tiny"), ("full", "full"), (" FULL ", "full")):
        monkeypatch.setenv("IVLITE_BOOK_MODE", value)
        assert book.run_mode() == expected
    monkeypatch.setenv("IVLITE_BOOK_MODE", "gpu")
    with pytest.raises(ValueError, match="IVLITE_BOOK_MODE"):
        book.run_mode()
    monkeypatch.delenv("IVLITE_BOOK_MODE")
    for cuda, cached, expected in ((False, True, "tiny"), (True, False, "tiny"), (True, True, "full")):
        monkeypatch.setattr(book.torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(book, "full_weights_cached", lambda: cached)
        assert book.run_mode() == expected


def test_weight_check_reads_only_the_local_cache(tmp_path, monkeypatch):
    """ModelScope counts as cached only with every config and weight file (fp16 or default)."""
    import huggingface_hub.constants

    import ivlite.book as book
    from ivlite.hub import CONFIG_FILES

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HPS_ROOT", str(tmp_path / "hps"))
    assert book.modelscope_variant() is None and not book.full_weights_cached()
    repo = tmp_path / ("models--" + book.MODELSCOPE_ID.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snapshot = repo / "snapshots" / ("0" * 40)
    files = list(CONFIG_FILES) + ["unet/diffusion_pytorch_model.fp16.safetensors",
                                  "vae/diffusion_pytorch_model.fp16.safetensors"]
    for name in files:
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_text("x")
    assert book.modelscope_variant() is None  # no text encoder weights yet
    (snapshot / "text_encoder" / "model.fp16.safetensors").write_text("x")
    assert book.modelscope_variant() == "fp16" and not book.hpsv2_cached()
    (tmp_path / "hps").mkdir()
    (tmp_path / "hps" / "HPS_v2_compressed.pt").write_text("x")
    assert book.full_weights_cached()


def test_lora_sites_and_modelscope_counts():
    import ivlite
    from ivlite.book import count_parameters, lora_sites, modelscope_unet
    from ivlite.models import tiny_random_model

    unet = tiny_random_model().unet
    ivlite.add_lora(unet)
    sites = lora_sites(unet)
    assert {s["kind"] for s in sites} == {"spatial self", "spatial cross", "temporal"}
    assert all(s["lora"] == s["rank"] * (s["in"] + s["out"]) for s in sites)
    assert sum(s["lora"] for s in sites) == count_parameters(unet, trainable_only=True)
    full = modelscope_unet()  # meta device: no memory, no download
    assert 1.40e9 < count_parameters(full) < 1.42e9


# ----------------------------------------------------------------------------- the build


@pytest.fixture(scope="session")
def built_book(tmp_path_factory):
    """Build a copy of the book (sources only) once: (completed process, html folder)."""
    src = tmp_path_factory.mktemp("book-src")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(BOOK, src / "book", ignore=shutil.ignore_patterns(
        ".ipynb_checkpoints", "__pycache__", "_build"))
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
           "build", str(src), "-W", "-n", "--keep-going"]
    env = {**os.environ, "IVLITE_BOOK_MODE": "tiny"}
    result = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True, timeout=1200)
    return result, src / "_build" / "html"


def test_book_builds_without_warnings(built_book):
    result, html = built_book
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"jupyter-book build failed:\n{log[-6000:]}"
    assert "build succeeded" in log and "WARNING" not in log, log[-6000:]
    for page in toc_files():
        assert (html / f"{page}.html").is_file(), f"{page}.html was not built"


# ----------------------------------------------------------------------------- the browser


def _browser_paths() -> tuple[str | None, str | None]:
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    driver = shutil.which("chromedriver") or ("/usr/bin/chromedriver"
                                              if Path("/usr/bin/chromedriver").is_file() else None)
    return chromium, driver


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def served_book(built_book):
    """The built HTML on http://127.0.0.1:PORT (a free port), for the session."""
    result, html = built_book
    if result.returncode != 0:
        pytest.fail("the book did not build; see test_book_builds_without_warnings")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    chromium, driver_path = _browser_paths()
    if not (chromium and driver_path):
        message = ("chromium and chromedriver are not installed (apt-get install chromium "
                   "chromium-driver)")
        if os.environ.get("IVLITE_SKIP_BROWSER") == "1":
            pytest.skip(message + "; IVLITE_SKIP_BROWSER=1")
        pytest.fail(message + "; or set IVLITE_SKIP_BROWSER=1 to skip the browser checks")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1280,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager (which may download drivers) is not involved.
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


_PAGE_STATE = """
const article = document.querySelector("main") || document.body;
const images = Array.from(article.querySelectorAll("img"));
const gifs = images.filter(i => i.src.startsWith("data:image/gif"));
const figures = images.filter(i => /[.]png([?#].*)?$/.test(i.getAttribute("src") || ""));
const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => (i.getAttribute("src") || "").slice(0, 80));
return {
  title: document.title,
  h1: Array.from(article.querySelectorAll("h1")).map(h => h.textContent.replace(/[#¶]/g, "").trim()),
  figures: figures.filter(i => i.complete && i.naturalWidth > 0).length,
  gifs: gifs.filter(i => i.complete && i.naturalWidth > 0).length,
  broken: broken,
  errors: article.querySelectorAll(".traceback, .output.error, .system-message, .problematic, .output.stderr").length,
  text: article.innerText,
  colab: document.querySelectorAll('a[href*="colab.research.google.com"]').length,
  repository: document.querySelectorAll('a[href*="github.com/"]').length,
};
"""


@pytest.mark.parametrize("page", toc_files())
def test_chapter_renders_in_a_browser(page, served_book, browser):
    """Title, every figure loaded, every animation present, no error text; launch buttons."""
    nb = read_notebook(ROOT / f"{page}.ipynb")
    title = chapter_title(nb)
    browser.get(f"{served_book}/{page}.html")
    deadline = time.monotonic() + 60
    state = browser.execute_script(_PAGE_STATE)
    while state["broken"] and time.monotonic() < deadline:  # images still decoding
        time.sleep(0.5)
        state = browser.execute_script(_PAGE_STATE)

    assert title in state["title"], f"page title {state['title']!r} lacks {title!r}"
    assert state["h1"] and state["h1"][0] == title, state["h1"]
    assert not state["broken"], f"images that did not load: {state['broken']}"
    assert state["figures"] >= png_count(nb), (state["figures"], png_count(nb))
    assert state["gifs"] >= len(gif_payloads(nb)), (state["gifs"], len(gif_payloads(nb)))
    assert state["errors"] == 0, "error or stderr output rendered on the page"
    assert "Traceback (most recent call last)" not in state["text"], "a traceback on the page"
    assert state["repository"] > 0, "no repository button"
    assert state["colab"] > 0, "no Colab launch button"
