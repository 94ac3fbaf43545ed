"""Run generated code with limits: a subprocess that cannot hang, flood, hoard or read our keys.

- cwd is the workspace; stdin is /dev/null, so a program waiting for input ends at once.
- A wall-clock timeout kills the whole process group (the program and anything it started).
- resource limits, set in the child before it execs: CPU seconds, address space (memory), size of
  any file it writes, number of processes, no core dumps.
- stdout and stderr are read together (as a terminal shows them) and capped: the head and the
  tail are kept, the middle is dropped and counted.
- The environment is built from an allow-list (PATH, locale, TZ, TERM), with HOME and TMPDIR inside the
  workspace, never copied from ours; any value containing a configured key is dropped as well.

This is not a jail: the program runs as the user, may read what the user can read and use the
network. See the README's safety model.
"""

from __future__ import annotations

import contextlib
import os
import resource
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ALLOWED_VARS = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "TERM")
# Only pip gets these: it may need a proxy, a private index or a CA bundle to install anything.
PIP_VARS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_TRUSTED_HOST", "PIP_CERT",
            "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
            "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")
MIB = 1024 * 1024
POLL_S = 0.1
HEAD_BYTES = 8 * 1024


@dataclass(frozen=True)
class Limits:
    """What one command may use."""

    timeout_s: float = 30.0
    cpu_s: int | None = None  # None: the timeout, rounded up
    memory_mb: int = 1024  # address space of each process
    file_size_mb: int = 64  # the largest file it may write
    processes: int = 128  # processes and threads it may add to the user's current count
    output_bytes: int = 64 * 1024  # output kept (head and tail)


@dataclass(frozen=True)
class Execution:
    """How one command ended."""

    command: str  # for people: "python main.py 100"
    exit_code: int | None  # negative: killed by that signal (as subprocess reports it)
    timed_out: bool
    output: str  # capped: head, a "[... N bytes cut ...]" line, tail
    output_total_bytes: int
    duration_s: float
    limits: Limits = field(default_factory=Limits)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def limit_hit(self) -> str | None:
        """Which limit ended the program, as far as can be told."""
        if self.timed_out:
            return f"timeout ({self.limits.timeout_s:g} s)"
        if self.exit_code == -signal.SIGXCPU:
            return "CPU time"
        if self.exit_code == -signal.SIGXFSZ or "File too large" in self.output[-2000:]:
            return f"file size ({self.limits.file_size_mb} MiB)"
        if self.exit_code and "MemoryError" in self.output[-2000:]:
            return f"memory ({self.limits.memory_mb} MiB)"
        return None

    def tail(self, chars: int = 4000) -> str:
        return self.output if len(self.output) <= chars else "[...]\n" + self.output[-chars:]

    def summary(self) -> str:
        """One line: the command and how it ended."""
        if self.timed_out:
            return f"`{self.command}` was killed after the {self.limits.timeout_s:g} s timeout"
        how = f"killed by signal {-self.exit_code}" if self.exit_code and self.exit_code < 0 \
            else f"exited {self.exit_code}"
        limit = f" ({self.limit_hit} limit)" if self.limit_hit else ""
        return f"`{self.command}` {how}{limit}"


def child_environment(workspace: Path, *, secrets: Sequence[str] = (), path_first: Sequence[Path] = (),
                      for_pip: bool = False, source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a sandboxed command: an allow-list of ours plus variables that point into the workspace."""
    source = os.environ if source is None else source
    names = ALLOWED_VARS + (PIP_VARS if for_pip else ())
    env = {name: source[name] for name in names if name in source}
    home, temp = ensure_state_dir(workspace) / "home", state_dir(workspace) / "tmp"
    home.mkdir(exist_ok=True)
    temp.mkdir(exist_ok=True)
    env.update(HOME=str(home), TMPDIR=str(temp), TMP=str(temp), TEMP=str(temp), PYTHONUNBUFFERED="1",
               PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1", PYTHONIOENCODING="utf-8",
               PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PIP_NO_CACHE_DIR="1")
    env["PATH"] = os.pathsep.join([*map(str, path_first), *_path_without_our_venv(env.get("PATH", os.defpath))])
    long_secrets = [s for s in secrets if len(s) >= 8]
    return {k: v for k, v in env.items() if not any(secret in v for secret in long_secrets)}


def state_dir(workspace: Path) -> Path:
    """orchestrai's own folder inside a workspace (home, temp files, the requirements hash)."""
    return Path(workspace) / ".orchestrai"


def ensure_state_dir(workspace: Path) -> Path:
    """The state folder as a real folder: a program may have replaced it with a symlink to elsewhere."""
    folder = state_dir(workspace)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        folder.unlink()
    folder.mkdir(exist_ok=True)
    return folder


def _path_without_our_venv(path: str) -> list[str]:
    # When orchestrai itself runs in a virtual environment, a program calling `pip` must not reach its pip.
    ours = Path(sys.prefix) / ("Scripts" if os.name == "nt" else "bin")
    keep = sys.prefix == sys.base_prefix
    return [part for part in path.split(os.pathsep) if part and (keep or Path(part) != ours)]


def run_sandboxed(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], limits: Limits,
                  shown_as: str | None = None, stop: threading.Event | None = None) -> Execution:
    """Run `argv` under `limits`; `stop` (set from another thread) kills it early.

    Never raises for the program's faults.
    """
    rlimits = _rlimits(limits)
    started = time.monotonic()
    proc = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                            # preexec_fn only calls setrlimit (async-signal-safe system calls), after setsid.
                            preexec_fn=lambda: _apply(rlimits))
    assert proc.stdout is not None
    output = _CappedOutput(limits.output_bytes)
    try:
        timed_out = _pump(proc, output, started + limits.timeout_s, stop)
    finally:
        _kill_group(proc)
        proc.stdout.close()
    return Execution(shown_as or " ".join(argv), proc.returncode, timed_out, output.text(), output.total,
                     round(time.monotonic() - started, 3), limits)


def _pump(proc: subprocess.Popen[bytes], output: _CappedOutput, deadline: float, stop: threading.Event | None) -> bool:
    """Read output until the program exits (True if the deadline or `stop` came first)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                return True
            for _ in selector.select(min(POLL_S, max(0.0, deadline - time.monotonic()))):
                if not _read_available(fd, output):
                    selector.unregister(fd)  # end of output; wait for the exit itself
                    return _wait(proc, deadline, stop)
            if _has_exited(proc.pid):
                _read_available(fd, output)  # what it wrote last; children still writing are cut off
                return False


def _read_available(fd: int, output: _CappedOutput) -> bool:
    """Read what is there now; False at end of output."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        output.add(chunk)


def _wait(proc: subprocess.Popen[bytes], deadline: float, stop: threading.Event | None) -> bool:
    while not _has_exited(proc.pid):
        if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
            return True
        time.sleep(0.01)
    return False


def _has_exited(pid: int) -> bool:
    # WNOWAIT leaves the child a zombie, so its process-group id cannot be reused before _kill_group.
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the program and everything left in its process group, then reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _rlimits(limits: Limits) -> list[tuple[int, tuple[int, int]]]:
    """The (resource, (soft, hard)) pairs to set, never above our own hard limits."""
    cpu = limits.cpu_s or int(limits.timeout_s) + 1
    wanted = [(resource.RLIMIT_CPU, cpu, cpu + 1),
              (resource.RLIMIT_AS, limits.memory_mb * MIB, limits.memory_mb * MIB),
              (resource.RLIMIT_FSIZE, limits.file_size_mb * MIB, limits.file_size_mb * MIB),
              (resource.RLIMIT_CORE, 0, 0)]
    if (current := _tasks_of_user()) is not None:
        # RLIMIT_NPROC counts every process and thread of the user, not just the program's.
        wanted.append((resource.RLIMIT_NPROC, current + limits.processes, current + limits.processes))
    pairs = []
    for kind, soft, hard in wanted:
        _, our_hard = resource.getrlimit(kind)
        cap = hard if our_hard == resource.RLIM_INFINITY else min(hard, our_hard)
        pairs.append((kind, (min(soft, cap), cap)))
    return pairs


def _apply(rlimits: list[tuple[int, tuple[int, int]]]) -> None:
    for kind, pair in rlimits:
        resource.setrlimit(kind, pair)


def _tasks_of_user() -> int | None:
    """Processes and threads the current user has now (Linux /proc); None where that cannot be counted."""
    uid, count = os.getuid(), 0
    try:
        entries = [e for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            if entry.stat().st_uid == uid:
                count += len(os.listdir(f"/proc/{entry.name}/task"))
        except OSError:
            continue  # it ended meanwhile
    return count or None


class _CappedOutput:
    """Keeps the first bytes and the last bytes of a stream, and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.head_limit = min(HEAD_BYTES, limit // 4)
        self.tail_limit = limit - self.head_limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        self.tail += chunk
        if len(self.tail) > 2 * self.tail_limit:
            del self.tail[: len(self.tail) - self.tail_limit]

    def text(self) -> str:
        tail = self.tail[-self.tail_limit:] if self.tail_limit else b""
        cut = self.total - len(self.head) - len(tail)
        middle = f"\n[... {cut} bytes of output cut ...]\n".encode() if cut > 0 else b""
        return bytes(self.head + middle + tail).decode("utf-8", errors="replace")
