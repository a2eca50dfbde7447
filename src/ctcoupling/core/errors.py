"""The one exception type users see: a one-line message that says what is wrong and how to fix it."""


class UserError(Exception):
    """Bad input (params, data files, archives). The CLI prints `error: <message>` and exits 2."""
