"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class LitLLMError(Exception):
    """Bad input or environment that the user can fix; the message says how."""


def yaml_problem(err: Exception) -> str:
    """A YAML parser error on one line: what is wrong and where (line and column, counted from 1)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem
