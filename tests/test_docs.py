"""The documentation site builds, its nav is complete, and the README / getting-started examples run.

Python blocks of a page run in order in one namespace (a page is read top to bottom), in a temporary
working directory. ``kcross-*`` shell commands then run in the same directory when they need no
user files: every input path they name exists there (the pages' Python blocks write them) or they
need no input at all (``--demo``, ``--help``). Without bundled weights, ``$KCROSS_WEIGHTS_DIR`` points
at a randomly initialised weight file so that ``KCross()`` runs as written.
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


@pytest.fixture(scope="module")
def weights_env(tmp_path_factory) -> dict[str, str]:
    """Environment in which ``KCross()`` finds weights: bundled ones, else a random-init file."""
    from kcross_metric.weights import bundled_dir

    if (bundled_dir() / "kcross.safetensors").is_file():
        return {}
    import torch

    from kcross_metric.nets.kcross_nets import KCrossNetworks
    from kcross_metric.weights import save_safetensors, write_checksums

    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    save_safetensors({k: v.contiguous() for k, v in KCrossNetworks().state_dict().items()}, d / "kcross.safetensors")
    write_checksums(d)
    return {"KCROSS_WEIGHTS_DIR": str(d)}


def _commands(text: str) -> list[list[str]]:
    """``kcross-*`` commands of a shell block (continuations joined, comments dropped, split at &&)."""
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
    """True if the command needs no user files: no placeholders, and every input it names exists."""
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
    exe = shutil.which(tokens[0])
    if exe is not None:
        cmd = [exe, *tokens[1:]]
    else:  # console scripts not on PATH: call the same entry point
        module = {"kcross-score": "score", "kcross-eval": "eval", "kcross-train": "train"}[tokens[0]]
        cmd = [sys.executable, "-c", f"import sys; from kcross_metric.cli.{module} import main; sys.exit(main())", *tokens[1:]]
    return subprocess.run(cmd, check=False, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=900)


def _run_page(path: Path, cwd: Path, env: dict[str, str], monkeypatch) -> list[str]:
    monkeypatch.chdir(cwd)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for i, block in enumerate(_blocks(path, ("python", "py"))):
        try:
            exec(compile(block, f"{path.name}[python block {i + 1}]", "exec"), namespace)  # noqa: S102 - the docs' own examples
        except Exception as exc:  # noqa: BLE001 - report which block failed and why
            pytest.fail(f"{path.name}: python block {i + 1} failed: {type(exc).__name__}: {exc}\n{block}")
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
def test_getting_started_runs_as_written(tmp_path, weights_env, monkeypatch):
    ran = _run_page(DOCS / "getting-started.md", tmp_path, weights_env, monkeypatch)
    assert (tmp_path / "phantom_report.html").is_file()
    assert any("--demo" in c for c in ran), ran
    assert any("--per-slice" in c for c in ran), ran  # the folder example ran on the written phantom files
    assert (tmp_path / "scores.csv").is_file() and (tmp_path / "scores_slices.csv").is_file()
    assert (tmp_path / "report.html").is_file()


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
