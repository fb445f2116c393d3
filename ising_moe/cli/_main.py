"""The ``isingmoe`` group, its error handling and the parsing helpers shared by the commands."""

from __future__ import annotations

import errno
import logging
import math
import sys
from pathlib import Path

import click
import numpy as np

from .._version import __version__
from ..errors import InvalidParameterError, IsingMoeError

log = logging.getLogger(__name__)



class _Group(click.Group):
    """Turns the library's named errors and click's usage errors into one line ``Error: ...`` and
    exit status 2 (never a traceback, never a usage block)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # a bare command: its help, as click shows it
                exc.show()
                sys.exit(exc.exit_code)
            where = exc.ctx.command_path if exc.ctx is not None else "isingmoe"
            message = " ".join(exc.format_message().split())
            click.echo(f"Error: {message} (see '{where} --help')", err=True)
            sys.exit(2)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(1)
        sys.exit(0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except IsingMoeError as exc:
            click.echo(f"Error: {' '.join(str(exc).split())}", err=True)
            sys.exit(2)
        except OSError as exc:
            from ..io import disk_full, disk_full_error

            if isinstance(exc, PermissionError):
                where = f" {exc.filename}" if exc.filename else ""
                click.echo(f"Error: permission denied{where}: choose another path or fix its permissions", err=True)
                sys.exit(2)
            if disk_full(exc):
                click.echo(f"Error: {disk_full_error(exc.filename or 'the output', exc)}", err=True)
                sys.exit(2)
            if exc.errno == errno.EROFS:
                click.echo(f"Error: {exc.filename or 'the output'} is on a read-only file system: choose another "
                           "output (-o/--output)", err=True)
                sys.exit(2)
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted: rerun the same command to resume.", err=True)
            sys.exit(130)


def to_json_text(payload) -> str:
    """The one JSON encoder of every ``--json``: strict JSON, non-finite numbers as ``null``, each
    listed under ``non_finite`` with what it was."""
    from ..io import strict_json, strict_jsonable

    notes: dict[str, str] = {}
    clean = strict_jsonable(payload, notes)
    if notes and isinstance(clean, dict):
        clean["non_finite"] = notes
    return strict_json(clean, indent=2)


def _emit(payload: dict, as_json: bool, lines: list[str]) -> None:
    if as_json:
        click.echo(to_json_text(payload))
    else:
        for line in lines:
            click.echo(line)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(type(obj).__name__)


def executor_options(func):
    """``--executor`` (and ``-p/--processes N`` as a shorthand for ``processes:N``)."""
    from ..executors import EXECUTOR_HELP

    func = click.option("--processes", "-p", type=click.IntRange(min=1), default=None,
                        help="Shorthand for --executor processes:N.")(func)
    return click.option("--executor", default=None, metavar="SPEC",
                        help=EXECUTOR_HELP + " [default: serial]")(func)


def _executor_spec(executor: str | None, processes: int | None) -> str:
    """The executor named by ``--executor``/``--processes`` (validated before any work)."""
    from ..executors import parse_executor

    if executor is not None and processes is not None:
        raise InvalidParameterError("give --executor or --processes, not both")
    spec = executor if executor is not None else (f"processes:{processes}" if processes and processes > 1 else "serial")
    parse_executor(spec)
    return spec


SEED = click.IntRange(min=0)


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else ("nan" if math.isnan(x) else f"{x:.10g}")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="isingmoe")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """ising-moe: statistical physics of Mixture-of-Experts routing.

    Extract expert sequences from MoE models, measure their spatial statistics, simulate and
    solve Potts/Ising chains exactly, and fit chains to routing data.
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")


def _parse_fields(text: str | None, n_states: int):
    """``--field``: comma-separated values per state, or a ``.npy`` file of shape (q,) or (n, q)."""
    if text is None:
        return None
    path = Path(text)
    if text.endswith(".npy"):
        if not path.is_file():
            raise InvalidParameterError(f"--field: no such file {path}")
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise InvalidParameterError(f"--field: {path} is not a NumPy array file ({exc})") from None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise InvalidParameterError(
            f"--field must be {n_states} comma-separated numbers or a .npy file, got {text!r}"
        ) from None
    if len(values) != n_states:
        raise InvalidParameterError(f"--field has {len(values)} values, expected n_states = {n_states}")
    return np.array(values)



def _int_list(text: str | None, option: str) -> list[int] | None:
    """``--layers 1,3,5`` style options."""
    if text is None or text == "":
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise InvalidParameterError(f"{option} must be comma-separated integers, got {text!r}") from None




def _grid(text: str | None, option: str, kind=float):
    """A grid option: ``a,b,c`` or ``start:stop:num`` (linspace); one value gives a scalar."""
    if text is None:
        return None
    try:
        if ":" in text:
            start, stop, num = text.split(":")
            values = np.linspace(float(start), float(stop), int(num)).tolist()
        else:
            values = [kind(v) if kind is not str else v.strip() for v in text.split(",")]
    except ValueError:
        raise InvalidParameterError(
            f"{option} must be comma-separated values or start:stop:num, got {text!r}") from None
    return values[0] if len(values) == 1 else values



def _one(text: str, option: str, kind):
    try:
        return kind(text)
    except ValueError:
        raise InvalidParameterError(f"{option} must be one {kind.__name__} value, got {text!r}") from None


