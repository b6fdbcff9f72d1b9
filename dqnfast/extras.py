"""The optional dependencies (the extras in pyproject.toml): the check that names the
extra to install where one is missing."""
import importlib.util


def importable(module: str) -> bool:
    """Whether ``module`` is installed (found without importing it)."""
    return importlib.util.find_spec(module) is not None


def require_extra(purpose: str, extra: str, *modules: str) -> None:
    """An ImportError that names ``extra`` where any of ``modules`` is not installed;
    ``purpose`` says what needs them ("--actors", "python -m dqnfast.plot")."""
    missing = [module for module in modules if not importable(module)]
    if missing:
        raise ImportError(f"{purpose} needs the '{extra}' extra (missing: {', '.join(missing)}): "
                          f"pip install --no-build-isolation -e '.[{extra}]' in the dqnfast "
                          "source tree (or: make setup)")
