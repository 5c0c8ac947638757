"""What can stop a shift, and the exit codes the command ends with (docs/shift.md).

Owns: the two error kinds every other module raises and the numbers `main` returns.
"""

from __future__ import annotations

EXIT_OK, EXIT_ROLLED_BACK, EXIT_USAGE, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class ShiftError(Exception):
    """Something the shift cannot go on with; the message says what."""


class UsageError(ShiftError):
    """A bad option or environment variable, found before anything was changed."""
