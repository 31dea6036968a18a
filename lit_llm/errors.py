"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class LitLLMError(Exception):
    """Bad input or environment that the user can fix; the message says how."""
