"""The ``pulse`` command line: run, replay and inspect the Social Pulse engine.

One module per command group: :mod:`stream.cli.flow` (replay, run, metrics, report), :mod:`stream.cli.dashboard`
(dashboard, demo), :mod:`stream.cli.models` (classify, train, evaluate, feedback, models), :mod:`stream.cli.spikes`,
:mod:`stream.cli.crm` (crm, kb) and :mod:`stream.cli.connectors` (firehose, ingest, outbox); shared options
and one-line errors are in :mod:`stream.cli.common`.

Settings come from flags, then ``PULSE_*`` / ``REDIS_URL`` environment variables, then a TOML file
(``--config``, ``PULSE_CONFIG`` or ``./pulse.toml``).
"""

from __future__ import annotations

import sys
from typing import Any

import typer

try:  # Typer >= 0.20 ships its own copy of click
    from typer._click import exceptions as _cx
except ImportError:  # pragma: no cover - older Typer uses click itself
    from click import exceptions as _cx  # type: ignore[no-redef]

from stream.cli import connectors, crm, dashboard, flow, models, spikes

__all__ = ["app", "main"]


class _PulseTyper(typer.Typer):
    """Typer app whose usage errors are one clear line (and exit code 2), never a traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        command = typer.main.get_command(self)
        try:
            rv = command.main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
            # Without standalone mode click returns an Exit's code instead of exiting.
            if isinstance(rv, int) and rv:
                sys.exit(rv)
            return rv
        except _cx.UsageError as exc:
            if type(exc).__name__.startswith("NoArgsIsHelp"):
                sys.exit(0)  # Typer has printed the help already
            where = exc.ctx.command_path if exc.ctx else "pulse"
            print(f"{where}: error: {exc.format_message()} (see '{where} --help')", file=sys.stderr)
            sys.exit(2)
        except _cx.ClickException as exc:
            print(f"pulse: error: {exc.format_message()}", file=sys.stderr)
            sys.exit(exc.exit_code)
        except typer.Abort:
            print("pulse: aborted", file=sys.stderr)
            sys.exit(130)
        except typer.Exit as exc:
            sys.exit(exc.exit_code)


app = _PulseTyper(
    name="pulse",
    help="Social Pulse: social mentions -> CRM -> live analytics.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)

for _group in (flow, dashboard, models, spikes, crm, connectors):
    _group.register(app)


def main() -> None:
    app()

