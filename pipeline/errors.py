"""The one error hierarchy: library code raises these, the CLI turns them into exit codes.

Each message says what went wrong, where (file and line when there is one) and what to do.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3  # the run finished, but some input files or rows were rejected
EXIT_LOCKED = 4  # another relaywatch process holds the lake; nothing was done
EXIT_INTERRUPTED = 130


class RelaywatchError(Exception):
    """Base class: an expected failure with a message meant for the user."""

    exit_code = EXIT_FAILED


class ConfigError(RelaywatchError):
    """Bad settings file, environment variable or option value."""

    exit_code = EXIT_USAGE


class InputFormatError(RelaywatchError):
    """An input file that cannot be read as any accepted export format."""

    def __init__(self, file: str, line: int | None, problem: str, fix: str = "") -> None:
        self.file = file
        self.line = line
        self.problem = problem
        self.fix = fix
        where = f"{file}:{line}" if line else file
        text = f"{where}: {problem}"
        if fix:
            text += f"; {fix}"
        super().__init__(text)


class LakeError(RelaywatchError):
    """The lake cannot be read or written."""


class LockError(LakeError):
    """Another relaywatch process holds the lake."""

    exit_code = EXIT_LOCKED


def unexpected(exc: BaseException, where: str | None = None) -> str:
    """An exception nobody planned for, said in one line: what failed, and what to do."""
    if isinstance(exc, OSError) and exc.strerror:
        named = f"{exc.filename}: " if exc.filename else ""
        return f"{named}{exc.strerror}" + (f" (while running {where})" if where else "")
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return (f"{where + ' failed' if where else 'failed'}: {type(exc).__name__}"
            + (f": {text}" if text else "") + "; rerun with --debug for the details, and "
            "report it if the input looks right")
