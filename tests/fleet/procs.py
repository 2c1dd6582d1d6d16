"""A facesense subprocess whose stderr lines are kept with the time they arrived (fleet tests)."""

from __future__ import annotations

import re
import subprocess
import threading
import time


class LoggedProcess:
    """Runs ``args``; :attr:`lines` holds ``(monotonic time, line)`` of its stderr as it comes."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def first(self, pattern: re.Pattern[str], *, after: float) -> float | None:
        """When a line matching ``pattern`` first arrived at or after ``after``."""
        return next((t for t, line in self.lines if t >= after and pattern.search(line)), None)

    def finish(self, timeout: float = 60) -> int:
        """Wait for the process to end; its exit code."""
        code = self.proc.wait(timeout=timeout)
        self._thread.join(timeout=10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return code
