"""Errors the user sees as one line, and the exit status of every command.

Exit status (every entry point, documented in docs/reliability.md):
    0    finished
    1    failed: the run started and could not go on for a reason outside the input (a full disk, a
         crash); a one-line message where the cause is known, else the traceback
    2    refused: the command or its input needs a change (a typo, an impossible value, a missing file,
         a run folder in use); the one-line message names the problem and the fix
    130  interrupted by SIGINT (Ctrl-C), 143 by SIGTERM (128 + the signal's number): the run can be
         resumed, and its summary prints the command that does it
"""

from __future__ import annotations

import signal

EXIT_FINISHED = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2


def exit_interrupted(signum: int) -> int:
    """The shell's convention for a process stopped by a signal: 128 + its number (SIGINT: 130)."""
    return 128 + int(signum)


class UserError(ValueError):
    """A problem with the user's input; the message names the problem and the fix (exit status 2)."""

    exit_code = EXIT_REFUSED


class RunError(RuntimeError):
    """A run that cannot go on for a known reason outside the input, e.g. a full disk (exit status 1).

    The message names the cause and what is kept, so it is shown as one line like a UserError.
    """

    exit_code = EXIT_FAILED


class RunInterrupted(BaseException):
    """SIGINT or SIGTERM stopped a run at a step boundary (after saving last.ckpt where it could).

    A BaseException, like KeyboardInterrupt: `except Exception` in library code must not swallow it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return exit_interrupted(self.signum)


def _cause_of_instantiation(err: BaseException) -> BaseException:
    """What Hydra's `instantiate` wrapped: the error the user's config caused."""
    if type(err).__name__ == "InstantiationException" and err.__cause__ is not None:
        return err.__cause__
    return err


def user_message(err: BaseException) -> str | None:
    """The one-line message for an error the user can fix (or a known failure such as a full disk), or
    None for a bug (which keeps its traceback)."""
    from omegaconf.errors import OmegaConfBaseException  # light, and not needed by the models

    cause = _cause_of_instantiation(err)
    if cause is not err and isinstance(cause, ValueError | TypeError):
        err = cause
    if isinstance(err, UserError | RunError | ValueError | OmegaConfBaseException):
        return " ".join(str(err).split())
    if type(err).__name__ == "MisconfigurationException":  # Lightning's word for a bad setting
        return " ".join(str(err).split())
    return None


def exit_code(err: BaseException) -> int:
    """The exit status for an error: 2 for bad input, 1 for a failed run (see the table above)."""
    err = _cause_of_instantiation(err)
    return int(getattr(err, "exit_code", EXIT_REFUSED if user_message(err) else EXIT_FAILED))
