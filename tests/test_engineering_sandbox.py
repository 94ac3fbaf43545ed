"""Hostile answers and hostile programs: files stay in the workspace, programs stay inside their limits.

Every write test checks the file system itself: a snapshot of everything around the workspace is
taken before and compared after. The venv tests share one workspace venv (creating pip in it is the
slow part) and install a wheel built here, from a folder, with --no-index: no network.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from conftest import write
from helpers import run_library
from scripted import ScriptedProvider

from orchestrai.modules.engineering.parser import AnswerFile, parse_answer
from orchestrai.modules.engineering.sandbox import Limits, child_environment, run_sandboxed
from orchestrai.modules.engineering.venv import WorkspaceVenv, pip_reason
from orchestrai.modules.engineering.workspace import prepare_workspace
from orchestrai.modules.engineering.writer import ConfinedWriter, WriteLimits

WHEEL_NAME = "orchestrai_demo_pkg"
MISSING_PACKAGE = "no-such-package-orchestrai-test==9.9"


@pytest.fixture
def area(tmp_path: Path) -> tuple[Path, Path]:
    """A fresh workspace, and a folder beside it that must never change."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target.txt").write_text("precious\n")
    return prepare_workspace(tmp_path / "ws"), outside


def snapshot(root: Path, skip: Path) -> dict[str, bytes | str]:
    """Every entry under root except `skip`: file bytes, link targets, 'dir' for folders."""
    found: dict[str, bytes | str] = {}
    for folder, dirs, files in os.walk(root):
        if Path(folder) == skip or skip in Path(folder).parents:
            continue
        for name in dirs + files:
            path = Path(folder) / name
            if path == skip:
                continue
            key = str(path.relative_to(root))
            if path.is_symlink():
                found[key] = "link->" + os.readlink(path)
            elif path.is_file():
                found[key] = path.read_bytes() if path.stat().st_size < 1 << 20 else f"size {path.stat().st_size}"
            else:
                found[key] = "dir" if path.is_dir() else "other"
    return found


def workspace_files(ws: Path) -> list[str]:
    return sorted(str(p.relative_to(ws)) for p in ws.rglob("*") if ".orchestrai" not in p.parts)


def write_answer(ws: Path, answer: str, limits: WriteLimits | None = None):
    parsed = parse_answer(answer)
    return ConfinedWriter(ws, limits).write(parsed.files)


def refusals(report) -> dict[str, str]:
    return {r.path: r.reason for r in report.refused}


# ------------------------------------------------------------------ the confined writer


def test_dotdot_absolute_and_home_paths_are_refused_and_nothing_lands_outside(area: tuple[Path, Path]) -> None:
    ws, outside = area
    escape_abs = outside / "abs.py"
    before = snapshot(ws.parent, skip=ws)
    answer = "\n".join(f"File: {path}\n```python\nEVIL = 1\n```" for path in
                       ["../x.py", "sub/../../x.py", str(escape_abs), "/tmp/x.py", "~/x.py", "C:/x.py",
                        "..\\x.py", "ok/../../outside/x.py"])
    report = write_answer(ws, answer + "\nFile: main.py\n```python\nprint('ok')\n```\n")
    assert report.written == ["main.py"]
    reasons = refusals(report)
    assert "contains '..'" in reasons["../x.py"] and "contains '..'" in reasons["sub/../../x.py"]
    assert "absolute path" in reasons[str(escape_abs)] and "absolute path" in reasons["/tmp/x.py"]
    assert "home folder" in reasons["~/x.py"] and "absolute" in reasons["C:/x.py"]
    assert "backslashes" in reasons["..\\x.py"]
    assert snapshot(ws.parent, skip=ws) == before
    assert not escape_abs.exists() and not Path("/tmp/x.py").exists()
    assert workspace_files(ws) == ["main.py"]


def test_symlinks_hard_links_pipes_and_managed_folders_are_never_written_through(area: tuple[Path, Path]) -> None:
    ws, outside = area
    (ws / "link").symlink_to(outside, target_is_directory=True)
    (ws / "sub").mkdir()
    (ws / "sub" / "deeper").symlink_to(outside, target_is_directory=True)
    (ws / "main.py").symlink_to(outside / "target.txt")
    (ws / "data.py").mkdir()  # a folder with a file's name
    (outside / "hard.txt").write_text("hard\n")
    os.link(outside / "hard.txt", ws / "hard.py")
    os.mkfifo(ws / "pipe.py")
    before = snapshot(ws.parent, skip=ws)
    answer = "\n".join(f"File: {path}\n```python\nEVIL = 1\n```" for path in
                       ["link/evil.py", "sub/deeper/evil.py", "main.py", "hard.py", "pipe.py", ".venv/bin/python",
                        ".orchestrai/home/.bashrc", "data.py"])
    report = write_answer(ws, answer)
    reasons = refusals(report)
    assert "symlink" in reasons["link/evil.py"] and "symlink" in reasons["sub/deeper/evil.py"]
    assert "symlink" in reasons["main.py"]
    assert "not a regular file" in reasons["pipe.py"]  # and the write did not block on the pipe
    assert "orchestrai manages" in reasons[".venv/bin/python"]
    assert "orchestrai manages" in reasons[".orchestrai/home/.bashrc"]
    assert "it is a folder, not a file" in reasons["data.py"]
    # A hard link is replaced by a new file (written beside it, then renamed), never written through.
    assert report.written == ["hard.py"] and (ws / "hard.py").read_text() == "EVIL = 1\n"
    assert snapshot(ws.parent, skip=ws) == before
    assert (outside / "target.txt").read_text() == "precious\n" and (outside / "hard.txt").read_text() == "hard\n"
    assert list(outside.glob("evil.py")) == []


def test_a_ten_megabyte_file_is_refused_with_its_size(area: tuple[Path, Path]) -> None:
    ws, outside = area
    huge = "x = 1\n" * (10 * 1024 * 1024 // 6)
    answer = f"File: main.py\n```python\nprint(1)\n```\nFile: big.py\n```python\n{huge}```\n"
    files = parse_answer(answer).files
    whole = ConfinedWriter(ws).write(files)
    assert whole.written == []
    assert "10.0 MiB, over the limit of 4.0 MiB per answer" in refusals(whole)["(the whole answer)"]
    assert workspace_files(ws) == []
    per_file = ConfinedWriter(ws, WriteLimits(max_total_bytes=64 * 1024 * 1024)).write(files)
    assert per_file.written == ["main.py"]
    assert "10.0 MiB, over the limit of 1.0 MiB per file" in refusals(per_file)["big.py"]
    assert workspace_files(ws) == ["main.py"]
    assert snapshot(outside, skip=ws) == {"target.txt": b"precious\n"}


def test_ten_thousand_files_are_refused_as_a_whole(area: tuple[Path, Path]) -> None:
    ws, outside = area
    answer = "".join(f"File: pkg/m{i}.py\n```python\nX = {i}\n```\n" for i in range(10_000))
    report = write_answer(ws, answer)
    assert report.written == []
    assert refusals(report) == {"(the whole answer)": "it holds 10000 files, over the limit of 200 per answer; "
                                                      "nothing was written"}
    assert workspace_files(ws) == [] and snapshot(outside, skip=ws) == {"target.txt": b"precious\n"}


def test_same_content_again_is_reported_unchanged(area: tuple[Path, Path]) -> None:
    ws, _ = area
    files = [AnswerFile("app/core.py", "A = 1\n", 1, "label")]
    assert ConfinedWriter(ws).write(files).written == ["app/core.py"]
    again = ConfinedWriter(ws).write(files)
    assert again.written == [] and again.unchanged == ["app/core.py"]


# ------------------------------------------------------------------ the sandboxed runner


def program(ws: Path, source: str, limits: Limits, *, secrets: list[str] = ()) -> object:
    (ws / "prog.py").write_text(source)
    return run_sandboxed([sys.executable, "prog.py"], cwd=ws, env=child_environment(ws, secrets=secrets),
                         limits=limits, shown_as="python prog.py")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie is dead, merely not reaped yet


def _dies(pid: int) -> bool:
    """Whether `pid` is dead, or dies soon: SIGKILL is delivered asynchronously."""
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not _alive(pid)


def test_an_endless_loop_and_the_process_it_started_are_killed_at_the_timeout(area: tuple[Path, Path]) -> None:
    ws, _ = area
    source = ("import subprocess, sys\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
              "print('child', child.pid, flush=True)\n"
              "while True:\n    pass\n")
    result = program(ws, source, Limits(timeout_s=1.5))
    assert result.timed_out and not result.ok
    assert result.limit_hit == "timeout (1.5 s)" and "killed after the 1.5 s timeout" in result.summary()
    child_pid = int(result.output.split()[1])
    assert _dies(child_pid), "the program's own child must die with it"


def test_unbounded_allocation_hits_the_memory_limit(area: tuple[Path, Path]) -> None:
    ws, _ = area
    source = "blocks = []\nwhile True:\n    blocks.append(bytearray(32 * 1024 * 1024))\n"
    result = program(ws, source, Limits(timeout_s=20, memory_mb=256))
    assert not result.timed_out and result.exit_code not in (0, None)
    assert "MemoryError" in result.output and result.limit_hit == "memory (256 MiB)"


def test_a_huge_file_write_stops_at_the_file_size_limit(area: tuple[Path, Path]) -> None:
    ws, _ = area
    source = "with open('big.bin', 'wb') as f:\n    for _ in range(50):\n        f.write(b'x' * 1024 * 1024)\n"
    result = program(ws, source, Limits(timeout_s=20, file_size_mb=1))
    assert not result.ok and result.limit_hit == "file size (1 MiB)"
    assert (ws / "big.bin").stat().st_size <= 1024 * 1024


def test_output_is_capped_keeping_head_and_tail(area: tuple[Path, Path]) -> None:
    ws, _ = area
    source = "print('FIRST')\nfor i in range(200000):\n    print('line', i)\nprint('LAST')\n"
    result = program(ws, source, Limits(timeout_s=20, output_bytes=16 * 1024))
    assert result.ok and result.output_total_bytes > 2_000_000
    assert len(result.output.encode()) < 17 * 1024
    assert result.output.startswith("FIRST") and result.output.rstrip().endswith("LAST")
    assert "bytes of output cut" in result.output


def test_stdin_is_closed_so_input_does_not_wait(area: tuple[Path, Path]) -> None:
    ws, _ = area
    result = program(ws, "name = input('name? ')\n", Limits(timeout_s=20))
    assert not result.timed_out and "EOFError" in result.output


def test_the_program_sees_no_api_key_or_secret(area: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    ws, _ = area
    configured = "sk-test-configured-key-0123456789"
    planted = {"OPENAI_API_KEY": "sk-test-env-openai-0123456789", "ANTHROPIC_API_KEY": "sk-ant-test-env-0123456789",
               "AWS_SECRET_ACCESS_KEY": "test-aws-secret-0123456789", "GITHUB_TOKEN": "ghp_test0123456789abcdef",
               "MY_SERVICE_PASSWORD": "test-password-0123456789",
               "LANG": f"C.UTF-8{configured}"}  # an allowed name holding a configured key is dropped too
    for name, value in planted.items():
        monkeypatch.setenv(name, value)
    source = "import json, os\nprint(json.dumps(dict(os.environ)))\n"
    result = program(ws, source, Limits(timeout_s=20), secrets=[configured])
    assert result.ok
    seen = json.loads(result.output)
    for value in [*planted.values(), configured]:
        assert value not in result.output
    assert not {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "LANG"} & set(seen)
    assert seen["HOME"] == str(ws / ".orchestrai" / "home") and seen["PATH"]


# ------------------------------------------------------------------ the workspace venv


def build_wheel(folder: Path, name: str = WHEEL_NAME, version: str = "1.0") -> Path:
    """A minimal pure-Python wheel, written by hand: no build backend, no network."""
    dist = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": b'GREETING = "hello from the local wheel"\n',
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: orchestrai-tests\n"
                              b"Root-Is-Purelib: true\nTag: py3-none-any\n"}

    def digest(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = ("".join(f"{path},sha256={digest(data)},{len(data)}\n" for path, data in files.items())
              + f"{dist}/RECORD,,\n")
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in {**files, f"{dist}/RECORD": record.encode()}.items():
            archive.writestr(path, data)
    return wheel


@pytest.fixture(scope="module")
def venv_area(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """One workspace whose venv has pip (ensurepip is the slow part), and pip args for the local wheel folder."""
    root = tmp_path_factory.mktemp("venv-area")
    wheels = root / "wheels"
    wheels.mkdir()
    build_wheel(wheels)
    ws = prepare_workspace(root / "ws")
    pip_args = ["--no-index", "--find-links", str(wheels)]
    WorkspaceVenv(ws, pip_args=pip_args).install_packages([])  # creates the venv and adds pip
    return ws, pip_args


@pytest.mark.slow
def test_requirements_install_into_the_workspace_venv_only(venv_area: tuple[Path, list[str]]) -> None:
    ws, pip_args = venv_area
    venv = WorkspaceVenv(ws, pip_args=pip_args)
    (ws / "requirements.txt").write_text("orchestrai-demo-pkg==1.0\n")
    assert venv.requirements_changed()
    result = venv.install_requirements()
    assert result.ok, result.output
    assert not venv.requirements_changed()  # remembered: the same file is not installed again
    where = subprocess.run([str(venv.python), "-c", f"import {WHEEL_NAME} as m; print(m.__file__, m.GREETING)"],
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(ws / ".venv")) and "hello from the local wheel" in where
    assert importlib.util.find_spec(WHEEL_NAME) is None, "orchestrai's own environment must stay untouched"


@pytest.mark.slow
def test_an_uninstallable_requirement_fails_with_pips_reason(venv_area: tuple[Path, list[str]]) -> None:
    ws, pip_args = venv_area
    (ws / "requirements.txt").write_text(MISSING_PACKAGE + "\n")
    venv = WorkspaceVenv(ws, pip_args=pip_args)
    result = venv.install_requirements()
    assert not result.ok and result.command == "pip install -r requirements.txt"
    assert f"No matching distribution found for {MISSING_PACKAGE}" in pip_reason(result.output)
    assert venv.requirements_changed(), "a failed install is tried again next time"


def write_debugger_pipeline(project: Path, **options: object) -> None:
    """p.yml: start_module hands a workspace to a debugger step with these options; config picks the model."""
    write(project / "config.yml", "default_model_config: {model: gpt-4o-mini}\n")
    write(project / "p.yml", f"""
        pipeline:
          - {{module: start_module, output_name: code}}
          - module: debugger
            inputs: [code]
            output_name: working
            options: {json.dumps(options)}
        """)


@pytest.mark.slow
def test_debugger_iteration_fails_on_pip_then_the_fixed_requirements_install_and_run(
        venv_area: tuple[Path, list[str]], project: Path) -> None:
    ws, pip_args = venv_area
    (ws / "requirements.txt").write_text(f"# first try\n{MISSING_PACKAGE}\n")
    (ws / "main.py").write_text(f"import {WHEEL_NAME}\nprint({WHEEL_NAME}.GREETING)\n")
    write_debugger_pipeline(project, max_iterations=3, pip_args=pip_args)
    fix = "The package name was wrong.\n\nFile: requirements.txt\n```text\norchestrai-demo-pkg==1.0\n```\n"
    provider = ScriptedProvider(replies=[fix])
    result, _ = run_library("p.yml",
                            inputs={"code": {"workspace": str(ws), "entry_point": "main.py", "request": "greet"}},
                            providers={"openai": provider}, allow_execution=True)
    record = next(r for r in result.records if r.id == "working")
    assert result.status == "completed", record.error
    first, second = record.details["iterations"]
    assert first["command"] == "pip install -r requirements.txt" and first["exit_code"] != 0
    assert f"No matching distribution found for {MISSING_PACKAGE}" in first["reason"]
    assert first["files_changed"] == ["requirements.txt"]
    assert "No matching distribution" in provider.calls[0].messages[1].content  # the model saw pip's reason
    assert second["command"] == "python main.py" and second["exit_code"] == 0
    assert "hello from the local wheel" in second["output_tail"]
    assert record.details["outcome"] == "fixed"


@pytest.mark.slow
def test_run_tests_installs_pytest_into_the_venv_and_a_failed_install_fails_the_iteration(
        venv_area: tuple[Path, list[str]], project: Path) -> None:
    ws, pip_args = venv_area
    (ws / "requirements.txt").unlink(missing_ok=True)
    (ws / "main.py").write_text("print('fine')\n")
    write(ws / "tests" / "test_main.py", "def test_nothing():\n    assert True\n")
    write_debugger_pipeline(project, max_iterations=1, run_tests=True, pip_args=pip_args)
    result, _ = run_library("p.yml", inputs={"code": {"workspace": str(ws), "request": "tests"}},
                            providers={"openai": ScriptedProvider()}, allow_execution=True)
    record = next(r for r in result.records if r.id == "working")
    [iteration] = record.details["iterations"]
    # main.py ran fine, then pytest was missing from the venv and (offline) could not be installed.
    assert iteration["command"] == "pip install pytest"
    assert "No matching distribution found for pytest" in iteration["reason"]
    assert record.status == "failed" and record.details["outcome"] == "gave_up"
