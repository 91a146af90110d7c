"""The documentation site builds, its nav is complete, and every example in the docs runs.

Convention for code blocks in docs/ (stated for readers in docs/index.md, "Examples in these pages"):

* ```python blocks of a page run in page order in one namespace, in a fresh temporary working
  directory; ```bash blocks run there too, command by command, between them. Only ``kcross-*`` and
  ``python -m kcross_metric...`` commands may appear in a tested bash block.
* ``<!-- not-tested: reason -->`` on the line(s) just above a fence: the block is not run. Every
  block of another language (```text, ```csv, ...) and every block that cannot run as written
  (installs, your own files, the network, full training runs, synopses) must carry one, with a
  reason. Their Python still has to compile and their ``kcross-*`` commands still have to parse.
* ``<!-- needs-shared: data/nirps weights/imagenet -->``: paths inside ../shared the block needs;
  when one is missing, that block and the rest of the page are skipped (with the reason).
* ``<!-- needs-imagenet: alex vgg -->``: the ImageNet backbones the block's LPIPS, DISTS or DFD-VGG
  use; for a user they download on first use, but tests never download (``$KCROSS_OFFLINE``), so
  without them on disk the block and the rest of the page are skipped (with the reason).
* Indented code blocks are refused (they could not carry a marker).

README.md predates the convention: its commands with placeholders or missing inputs are skipped.
Without bundled weights, ``$KCROSS_WEIGHTS_DIR`` points at a randomly initialised weight file so
that ``KCross()`` runs as written.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
_FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(path: Path, languages: tuple[str, ...]) -> list[str]:
    return [body for lang, body in _FENCE.findall(path.read_text(encoding="utf-8")) if lang in languages]


def _nav_files(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [f for item in nav for f in _nav_files(item)]
    if isinstance(nav, dict):
        return [f for v in nav.values() for f in _nav_files(v)]
    return []


def _mkdocs_config() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))


def test_every_nav_entry_exists_and_every_page_is_in_nav():
    config = _mkdocs_config()
    assert config["docs_dir"] == "docs"
    files = _nav_files(config["nav"])
    assert "getting-started.md" in files and "radiologist-agreement.md" in files and "report.md" in files
    missing = [f for f in files if not (DOCS / f).is_file()]
    assert not missing, f"mkdocs.yml nav lists pages that do not exist: {missing}"
    assert len(files) == len(set(files))
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    omitted = [p for p in pages if p not in files]
    assert not omitted, f"docs pages missing from mkdocs.yml nav (add them): {omitted}"


def test_example_screenshot_is_a_small_png():
    shot = DOCS / "images" / "report-example.png"
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(data) < 200_000
    assert "images/report-example.png" in (DOCS / "report.md").read_text(encoding="utf-8")


def test_mkdocs_build_strict(tmp_path):
    try:
        import mkdocs  # noqa: F401
    except ImportError:
        pytest.skip("mkdocs not installed (pip install -e '.[docs]')")
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        check=False, capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (site / "index.html").is_file() and (site / "getting-started" / "index.html").is_file()
    assert (site / "images" / "report-example.png").is_file()


# ----------------------------------------------------------------------------- runnable examples

_EXECUTED = ("python", "bash")
_MARKER = re.compile(r"<!--\s*([\w-]+)\s*:(.*?)-->")
_MARKER_KEYS = ("not-tested", "needs-shared", "needs-imagenet")
_CLI_MODULES = {"kcross-score": "score", "kcross-eval": "eval", "kcross-train": "train"}
# pages whose examples take more than ~15 s on 2 busy cores (K-CROSS loaded several times); a page
# running `kcross-train` (smoke runs) is slow without being listed
_SLOW_PAGES = {"getting-started.md", "evaluation.md", "report.md", "training-loop.md"}
# files a page's examples must leave in the working directory (beyond "exited 0")
_OUTPUTS = {
    "getting-started.md": ("phantom_report.html", "scores.csv", "scores_slices.csv", "report.html"),
    "report.md": ("demo.html", "report.html"),
    "evaluation.md": ("rated/set.csv", "rated.md", "rated_items.csv", "2afc.md", "nirps.md", "nirps.csv"),
    "io-and-normalization.md": ("sub-01_T2w.nii.gz",),
    "weights.md": ("trusted.pt", "kcross.safetensors"),
    "training.md": ("runs/smoke/kcross.safetensors", "runs/smoke/SHA256SUMS"),
    "datasets/twoafc.md": ("runs/twoafc_small/pairs.csv",),
}


@pytest.fixture(scope="module")
def weights_env(tmp_path_factory) -> dict[str, str]:
    """Environment in which ``KCross()`` finds weights: bundled ones, else a random-init file."""
    from kcross_metric.weights import bundled_dir

    if (bundled_dir() / "kcross.safetensors").is_file():
        return {}
    import torch

    from kcross_metric.core.nets.kcross_nets import KCrossNetworks
    from kcross_metric.weights import save_safetensors, write_checksums

    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    save_safetensors({k: v.contiguous() for k, v in KCrossNetworks().state_dict().items()}, d / "kcross.safetensors")
    write_checksums(d)
    return {"KCROSS_WEIGHTS_DIR": str(d)}


class Block:
    """One fenced block of a page and the markers on the lines just above it."""

    def __init__(self, page: str, line: int, lang: str, body: str, markers: list[tuple[str, str]]) -> None:
        self.page, self.line, self.lang, self.body, self.markers = page, line, lang, body, markers

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line} ({self.lang or 'no language'} block)"

    def marker(self, key: str) -> str | None:
        values = [v for k, v in self.markers if k == key]
        return values[0] if values else None

    @property
    def tested(self) -> bool:
        return self.lang in _EXECUTED and self.marker("not-tested") is None

    @property
    def shared_parts(self) -> list[tuple[str, ...]]:
        return [tuple(p.split("/")) for p in (self.marker("needs-shared") or "").split()]


def _parse_blocks(text: str, page: str) -> list[Block]:
    lines = text.splitlines()
    blocks = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start())  # 0-based index of the opening fence
        markers, j = [], line - 1
        while j >= 0 and lines[j].strip().startswith("<!--"):
            found = _MARKER.fullmatch(lines[j].strip())
            markers.insert(0, (found.group(1), found.group(2).strip()) if found else ("malformed", lines[j].strip()))
            j -= 1
        blocks.append(Block(page, line + 1, m.group(1), m.group(2), markers))
    return blocks


def _doc_pages() -> list[str]:
    return sorted(str(p.relative_to(DOCS).as_posix()) for p in DOCS.rglob("*.md"))


def _page_blocks(page: str) -> list[Block]:
    return _parse_blocks((DOCS / page).read_text(encoding="utf-8"), page)


def _shell_commands(text: str) -> list[list[str]]:
    """Every command of a shell block (continuations joined, comments dropped, split at &&)."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        for part in line.split("&&"):
            tokens = shlex.split(part, comments=True)
            if tokens:
                out.append(tokens)
    return out


def _is_package_command(tokens: list[str]) -> bool:
    return tokens[0] in _CLI_MODULES or (
        len(tokens) > 2 and tokens[:2] == ["python", "-m"] and tokens[2].split(".")[0] == "kcross_metric"
    )


def _commands(text: str) -> list[list[str]]:
    """``kcross-*`` commands of a shell block (README mode: other commands are dropped)."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        for part in line.split("&&"):
            try:
                tokens = shlex.split(part, comments=True)
            except ValueError:
                continue
            if tokens and tokens[0].startswith("kcross-"):
                out.append(tokens)
    return out


def _runnable(tokens: list[str], cwd: Path) -> bool:
    """README mode: True if the command needs no user files (no placeholders, every input exists)."""
    if any("[" in t or "..." in t or t.isupper() for t in tokens[1:]):
        return False  # synopsis placeholders such as [--mask lesion.nii.gz] or FAKE_DIR
    if "--help" in tokens or "-h" in tokens:
        return True
    if tokens[0] != "kcross-score":
        return False
    from kcross_metric.cli.score import build_parser

    try:
        args = build_parser().parse_args(tokens[1:])
    except SystemExit:
        return False
    if args.demo:
        return True
    inputs = [args.fake, args.real, args.source, args.mask, args.source_dir, args.mask_dir, args.weights]
    named = [p for p in inputs if p is not None]
    return bool(named) and all((cwd / p).exists() for p in named)


def _run_command(tokens: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    if tokens[0] == "python":
        cmd = [sys.executable, *tokens[1:]]
    elif (exe := shutil.which(tokens[0])) is not None:
        cmd = [exe, *tokens[1:]]
    else:  # console scripts not on PATH: call the same entry point
        module = _CLI_MODULES[tokens[0]]
        cmd = [sys.executable, "-c", f"import sys; from kcross_metric.cli.{module} import main; sys.exit(main())", *tokens[1:]]
    return subprocess.run(cmd, check=False, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=900)


def _exec_python(block_body: str, name: str, namespace: dict[str, object]) -> None:
    try:
        exec(compile(block_body, name, "exec"), namespace)  # noqa: S102 - the docs' own examples
    except Exception as exc:  # noqa: BLE001 - report which block failed and why
        pytest.fail(f"{name} failed: {type(exc).__name__}: {exc}\n{block_body}")


def _run_blocks(blocks: list[Block], cwd: Path, env: dict[str, str], monkeypatch) -> list[str]:
    """Run the tested blocks in page order; skip the rest of the page at a missing shared path."""
    from kcross_metric._util.shared_data import shared_path
    from kcross_metric.baselines import backbone_available

    monkeypatch.chdir(cwd)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    ran: list[str] = []
    for block in (b for b in blocks if b.tested):
        missing = ["/".join(parts) for parts in block.shared_parts if shared_path(*parts) is None]
        missing += [f"ImageNet {net} backbone" for net in (block.marker("needs-imagenet") or "").split()
                    if not backbone_available(net)]
        if missing:
            pytest.skip(f"{block.where} needs {missing} (shared data folder or backbones on disk); ran {len(ran)} "
                        f"example(s) before it, skipped the rest of the page")
        if block.lang == "python":
            _exec_python(block.body, f"{block.where}", namespace)
            ran.append(f"python block at line {block.line}")
            continue
        for tokens in _shell_commands(block.body):
            proc = _run_command(tokens, cwd, env)
            assert proc.returncode == 0, (
                f"{block.where}: `{shlex.join(tokens)}` exited {proc.returncode}:\n{proc.stderr[-3000:]}"
            )
            ran.append(shlex.join(tokens))
    return ran


def _check_cli_parses(tokens: list[str]) -> str | None:
    """None if a ``kcross-*`` command's options parse with its own CLI, else the argparse message."""
    import contextlib
    import importlib
    import io

    module = importlib.import_module(f"kcross_metric.cli.{_CLI_MODULES[tokens[0]]}")
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            module.build_parser().parse_args(tokens[1:])
    except SystemExit as exc:
        return None if exc.code == 0 else err.getvalue().strip().splitlines()[-1]
    return None


def _convention_problems(text: str, page: str) -> list[str]:
    """Every way a page breaks the code-block convention of this module's docstring."""
    markdown = pytest.importorskip("markdown")
    blocks = _parse_blocks(text, page)
    problems = []
    rendered = markdown.markdown(text, extensions=["fenced_code", "tables"]).count("<pre>")
    if rendered != len(blocks):
        problems.append(f"{page}: {rendered} code blocks render but {len(blocks)} are ``` fenced at the line "
                        "start (indented code blocks cannot carry a marker: fence them)")
    for b in blocks:
        for key, value in b.markers:
            if key not in _MARKER_KEYS:
                problems.append(f"{b.where}: unknown marker <!-- {key}: {value} --> (known: {_MARKER_KEYS})")
            elif not value:
                problems.append(f"{b.where}: <!-- {key}: --> needs a value (a reason, or shared paths)")
        for parts in b.shared_parts:
            if parts[0] in ("", "..", "shared") or ".." in parts:
                problems.append(f"{b.where}: needs-shared paths are relative to the shared folder, got {'/'.join(parts)!r}")
        if not b.tested and b.marker("not-tested") is None:
            problems.append(f"{b.where}: not run by the tests; add <!-- not-tested: reason --> above it or "
                            f"make it a runnable ```python / ```bash block")
        if b.lang == "python":
            try:
                compile(b.body, b.where, "exec")
            except SyntaxError as exc:
                problems.append(f"{b.where}: does not compile: {exc}")
        if b.lang == "bash":
            try:
                commands = _shell_commands(b.body)
            except ValueError as exc:
                problems.append(f"{b.where}: cannot be split into commands: {exc}")
                continue
            for tokens in commands:
                if b.tested and not _is_package_command(tokens):
                    problems.append(f"{b.where}: `{shlex.join(tokens)}` is not a kcross-* or python -m kcross_metric "
                                    "command; mark the block <!-- not-tested: reason --> or leave the command out")
                synopsis = any("[" in t or "..." in t for t in tokens)
                if tokens[0] in _CLI_MODULES and not synopsis and (msg := _check_cli_parses(tokens)):
                    problems.append(f"{b.where}: `{shlex.join(tokens)}` does not parse: {msg}")
    return problems


@pytest.mark.parametrize("page", _doc_pages())
def test_page_follows_the_code_block_convention(page):
    problems = _convention_problems((DOCS / page).read_text(encoding="utf-8"), page)
    assert not problems, "\n".join(problems)


def test_convention_check_flags_unmarked_blocks_and_reads_markers():
    text = (
        "Intro.\n\n<!-- not-tested: full training run (~95 min) -->\n```bash\nkcross-train stage1 --run runs/s1\n```\n\n"
        "<!-- needs-shared: data/nirps weights/imagenet -->\n```bash\nkcross-eval nirps --n-boot 0\n```\n\n"
        "```text\nkcross-score FAKE_DIR REAL_DIR\n```\n\n"
        "```bash\npip install -e . && kcross-score --demo --no-such-option\n```\n\n"
        "<!-- not-tested: -->\n```python\nx = (\n```\n\n"
        "Text.\n\n    indented_code()\n"
    )
    blocks = _parse_blocks(text, "p.md")
    assert [(b.lang, b.tested) for b in blocks] == [("bash", False), ("bash", True), ("text", False), ("bash", True), ("python", False)]
    assert blocks[0].marker("not-tested") == "full training run (~95 min)" and blocks[0].line == 4
    assert blocks[1].shared_parts == [("data", "nirps"), ("weights", "imagenet")]
    problems = "\n".join(_convention_problems(text, "p.md"))
    assert "6 code blocks render but 5" in problems
    assert "p.md:13 (text block): not run by the tests" in problems
    assert "`pip install -e .` is not a kcross-*" in problems
    assert "--no-such-option" in problems and "does not parse" in problems
    assert "<!-- not-tested: --> needs a value" in problems and "does not compile" in problems
    assert "p.md:4" not in problems and "p.md:9" not in problems  # marked and well-formed blocks pass


def test_runner_runs_blocks_in_page_order_and_names_the_failing_command(tmp_path, monkeypatch):
    text = (
        "```python\nfrom pathlib import Path\nPath('set.csv').write_text('fake,real,score\\n')\n```\n\n"
        "<!-- not-tested: would fail -->\n```python\nraise RuntimeError\n```\n\n"
        "```bash\npython -m kcross_metric.cli.eval --help\nkcross-eval rated set.csv --metrics psnr --data-range 1\n```\n"
    )
    with pytest.raises(AssertionError, match=r"(?s)p\.md:11 \(bash block\): `kcross-eval rated set.csv .*` exited 2:.*no rows"):
        _run_blocks(_parse_blocks(text, "p.md"), tmp_path, {}, monkeypatch)
    assert (tmp_path / "set.csv").is_file()  # the python block ran first, in the working directory
    gated = "```python\nx = 1\n```\n\n<!-- needs-shared: data/no-such-folder -->\n```python\nraise RuntimeError\n```\n"
    with pytest.raises(pytest.skip.Exception, match=r"needs \['data/no-such-folder'\].*ran 1 example"):
        _run_blocks(_parse_blocks(gated, "q.md"), tmp_path, {}, monkeypatch)


def _pages_with_examples() -> list:
    params = []
    for page in _doc_pages():
        if any(b.tested for b in _page_blocks(page)):
            trains = any(b.tested and b.lang == "bash" and "kcross-train" in b.body for b in _page_blocks(page))
            marks = [pytest.mark.slow] if page in _SLOW_PAGES or trains else []
            params.append(pytest.param(page, marks=marks, id=page))
    return params


@pytest.mark.parametrize("page", _pages_with_examples())
def test_page_examples_run_as_written(page, tmp_path, weights_env, monkeypatch):
    ran = _run_blocks(_page_blocks(page), tmp_path, weights_env, monkeypatch)
    assert ran
    missing = [f for f in _OUTPUTS.get(page, ()) if not (tmp_path / f).is_file() or (tmp_path / f).stat().st_size == 0]
    assert not missing, f"{page}: its examples ran ({ran}) but did not write {missing}"
    if page == "getting-started.md":
        assert any("--demo" in c for c in ran) and any("--per-slice" in c for c in ran), ran


def test_every_slow_or_output_entry_names_a_page():
    pages = set(_doc_pages())
    assert _SLOW_PAGES <= pages and set(_OUTPUTS) <= pages
    assert set(_OUTPUTS) <= {p.values[0] for p in _pages_with_examples()}


def _run_page(path: Path, cwd: Path, env: dict[str, str], monkeypatch) -> list[str]:
    """README mode: python blocks first, then the ``kcross-*`` commands that need no user files."""
    monkeypatch.chdir(cwd)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for i, block in enumerate(_blocks(path, ("python", "py"))):
        _exec_python(block, f"{path.name}[python block {i + 1}]", namespace)
    ran = []
    for block in _blocks(path, ("bash", "sh", "shell", "console")):
        for tokens in _commands(block):
            if not _runnable(tokens, cwd):
                continue
            proc = _run_command(tokens, cwd, env)
            assert proc.returncode == 0, f"{path.name}: `{shlex.join(tokens)}` exited {proc.returncode}:\n{proc.stderr[-3000:]}"
            ran.append(shlex.join(tokens))
    return ran


@pytest.mark.slow
def test_readme_runs_as_written(tmp_path, weights_env, monkeypatch):
    ran = _run_page(ROOT / "README.md", tmp_path, weights_env, monkeypatch)
    assert any("--demo" in c for c in ran), ran


def test_placeholder_commands_are_not_run(tmp_path):
    cmds = _commands(
        "kcross-score fake.nii.gz real.nii.gz --source t1.nii.gz [--mask lesion.nii.gz] [--json]\n"
        "pip install -e . && kcross-score --demo  # comment\n"
        "kcross-score FAKE_DIR REAL_DIR --out scores.csv\n"
        "kcross-train stage1 --run runs/stage1\n"
    )
    assert [c[0] for c in cmds] == ["kcross-score"] * 3 + ["kcross-train"]
    assert [_runnable(c, tmp_path) for c in cmds] == [False, True, False, False]
    (tmp_path / "a.nii.gz").write_bytes(b"x")
    assert _runnable(["kcross-score", "a.nii.gz", "a.nii.gz"], tmp_path)
    assert not _runnable(["kcross-score", "a.nii.gz", "b.nii.gz"], tmp_path)
