"""User-facing errors: bad input that the CLIs report as one line and exit status 2."""
import functools
import os
import sys


class UserError(ValueError):
    """Bad input from the user (a value, a file, a name). The message is the whole story: one line."""


def one_line_errors(main):
    """Wrap a CLI entry point: a UserError/ValueError becomes one line on stderr and exit status 2.

    The full traceback is shown only with HYDRA_FULL_ERROR=1 (the same switch Hydra uses)."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (ValueError, FileNotFoundError, KeyError) as e:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
            print(f"error: {msg}".splitlines()[0] if msg else f"error: {type(e).__name__}", file=sys.stderr)
            sys.exit(2)

    return wrapper
