"""The rollout's exit codes and the error that ends a run with one of them (the codes are listed
in the package's docstring, and `python -m tools.rollout --help` repeats them)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DRIFT = 3
EXIT_ERROR = 4


class RolloutError(Exception):
    """An error that ends the run with a message and an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code
