"""The workspace's own virtual environment: generated code runs there, and requirements.txt goes there.

The venv is created without pip (a quarter of a second), so code that imports a package it never
declared fails the way it would on a clean machine. pip is added (from the wheel Python bundles, no
network) only when a requirements.txt appears, and `pip install -r` runs with the venv's own pip,
inside the sandbox: a package's build scripts are generated code too. orchestrai's own environment is
never touched. The hash of the last installed requirements.txt is kept, so an unchanged file is not
installed again.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import venv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...api import ModuleError
from .sandbox import Execution, Limits, child_environment, run_sandboxed, state_dir
from .writer import read_confined

REQUIREMENTS = "requirements.txt"
PIP_LIMITS = Limits(timeout_s=600.0, memory_mb=4096, file_size_mb=1024, output_bytes=64 * 1024)


@dataclass
class WorkspaceVenv:
    """`<workspace>/.venv`, and the commands that use it."""

    workspace: Path
    secrets: Sequence[str] = ()
    pip_args: Sequence[str] = ()
    pip_limits: Limits = PIP_LIMITS

    @property
    def path(self) -> Path:
        return self.workspace / ".venv"

    @property
    def bin_dir(self) -> Path:
        return self.path / ("Scripts" if os.name == "nt" else "bin")

    @property
    def python(self) -> Path:
        return self.bin_dir / ("python.exe" if os.name == "nt" else "python")

    def ensure(self) -> None:
        """Create the venv (without pip) unless it exists."""
        if self.python.exists():
            return
        try:
            # orchestrai's interpreter is the base; its site-packages stay invisible to the venv.
            venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(self.path)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise ModuleError(f"cannot create the virtual environment {self.path}: {exc}",
                              hint="check that the workspace is writable and that Python's venv module works") from None

    def environment(self, *, for_pip: bool = False) -> dict[str, str]:
        env = child_environment(self.workspace, secrets=self.secrets, path_first=[self.bin_dir], for_pip=for_pip)
        env["VIRTUAL_ENV"] = str(self.path)
        return env

    def requirements_changed(self) -> bool:
        """Whether requirements.txt exists and differs from the one installed last."""
        digest = self._requirements_digest()
        return digest is not None and digest != self._installed_digest()

    def install_requirements(self, stop: threading.Event | None = None) -> Execution:
        """`pip install -r requirements.txt` with the venv's pip; remembers the file once installed."""
        result = self.install(["-r", REQUIREMENTS], "pip install -r requirements.txt", stop)
        if result.ok and (digest := self._requirements_digest()) is not None:
            (state_dir(self.workspace) / "requirements.sha256").write_text(digest, encoding="utf-8")
        return result

    def install_packages(self, packages: Sequence[str], stop: threading.Event | None = None) -> Execution:
        return self.install(list(packages), "pip install " + " ".join(packages), stop)

    def install(self, what: list[str], shown_as: str, stop: threading.Event | None = None) -> Execution:
        """`pip install WHAT` with the venv's own pip (added first, offline, if the venv has none)."""
        self.ensure()
        if not (self.bin_dir / "pip").exists() and not (self.bin_dir / "pip.exe").exists():
            added = self._run([str(self.python), "-m", "ensurepip", "--default-pip"], "python -m ensurepip", stop)
            if not added.ok:
                return added
        return self._run([str(self.python), "-m", "pip", "install", *what, *self.pip_args], shown_as, stop)

    def _run(self, argv: list[str], shown_as: str, stop: threading.Event | None) -> Execution:
        return run_sandboxed(argv, cwd=self.workspace, env=self.environment(for_pip=True), limits=self.pip_limits,
                             shown_as=shown_as, stop=stop)

    def _requirements_digest(self) -> str | None:
        data = read_confined(self.workspace, REQUIREMENTS, 1024 * 1024)
        return hashlib.sha256(data).hexdigest() if data is not None else None

    def _installed_digest(self) -> str | None:
        try:
            return (state_dir(self.workspace) / "requirements.sha256").read_text(encoding="utf-8").strip()
        except OSError:
            return None


def pip_reason(output: str) -> str:
    """pip's own explanation of a failure: its ERROR lines (else its last line)."""
    errors = [line.strip() for line in output.splitlines() if line.startswith("ERROR:")]
    if errors:
        return " ".join(errors[-3:])
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "pip failed without a message"

