"""The one exception type for problems the user can fix.

Anything raised as :class:`UserError` is printed by the ``jaxsafe`` command as a
single line on stderr with exit status 2 — no traceback. Library callers get an
ordinary exception they can catch.
"""


class UserError(ValueError):
    """Bad input from the user: a missing file, a malformed config, a bad value."""
