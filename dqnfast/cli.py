"""What the command-line tools (``python -m dqnfast.train``, ``dqnfast.evaluate`` and
``dqnfast.plot``) share: a user's mistake ends a tool with one line, ``error: ...``, on
stderr and exit status 2, as argparse does for a bad flag; a bug shows its traceback;
``--debug`` shows the traceback of every error."""
import argparse
import functools
import sys

# The user's mistakes. The checks of settings, env ids, run folders, checkpoints and
# installed packages raise these with messages that say what was expected; OSError
# also covers a missing or existing file, a permission, a full disk, an address that
# does not answer. Not TypeError: the command line hands every value over with its
# type (argparse converts it), so there a TypeError is a bug, as are AttributeError,
# KeyError, RuntimeError and the rest.
USER_MISTAKES = (ValueError, ImportError, OSError)

_DEBUG_HELP = ("show the traceback of every error (without it, a mistake in the command, "
               "its files or the installed packages is one line)")


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)


def entry_point(main):
    """Wraps a tool's ``main(argv)``: the user's mistakes become one line and exit
    status 2, unless ``--debug`` is among the arguments."""
    @functools.wraps(main)
    def run(argv=None):
        argv = sys.argv[1:] if argv is None else list(argv)
        try:
            return main(argv)
        except USER_MISTAKES as error:
            if _debug_parser.parse_known_args(argv)[0].debug:
                raise
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
    return run


# Reads --debug alone: the error may come before the tool's own parser is done.
_debug_parser = argparse.ArgumentParser(add_help=False)
add_debug_flag(_debug_parser)
