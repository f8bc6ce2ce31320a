"""User-facing errors: bad input the user can fix. Entry points print them as one line and exit 2."""


class UserError(ValueError):
    """A problem with the user's input; the message names the problem and the fix."""
