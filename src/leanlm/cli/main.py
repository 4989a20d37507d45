"""The `leanlm` command: parse, call the library, print. Errors become one line and exit code 2."""

import sys

import typer
from rich.text import Text
from typer._click.exceptions import NoArgsIsHelpError, UsageError

from leanlm.cli import bench_cmd, data_cmd, eval_cmd, generate_cmd, kv_cmd, models_cmd, moe_cmd, sift_cmd
from leanlm.cli.console import err_console, setup_logging
from leanlm.errors import LeanLMError

app = typer.Typer(
    name="leanlm",
    help="Make language models cheaper to run and to train, on real Hugging Face models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what happens (model loading, caching).")):
    setup_logging(verbose)


app.command("generate")(generate_cmd.generate)
app.command("models")(models_cmd.models)
app.command("data")(data_cmd.data)
app.add_typer(eval_cmd.app, name="eval")
app.add_typer(kv_cmd.app, name="kv")
app.add_typer(moe_cmd.app, name="moe")
app.add_typer(sift_cmd.app, name="sift")
app.add_typer(bench_cmd.app, name="bench")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a bad input prints one `error: ...` line on stderr and exits with code 2."""
    try:
        # Outside standalone mode, typer returns the exit code of --help (0) or Ctrl-C (130).
        code = app(args=argv, standalone_mode=False)
    except LeanLMError as err:
        _fail(str(err))
    except NoArgsIsHelpError as err:
        # typer's rich help has already printed itself to stdout; the plain one comes back as the message
        if help_text := err.format_message().strip():
            err_console.print(help_text, markup=False, highlight=False)
        sys.exit(2)
    except UsageError as err:
        command = err.ctx.command_path if err.ctx is not None else "leanlm"
        _fail(f"{err.format_message()} (see: {command} --help)")
    except typer.Abort:
        code = 130
    if code == 130:
        err_console.print("interrupted")
    if isinstance(code, int) and code:
        sys.exit(code)


def _fail(message: str) -> None:
    err_console.print(Text("error: ", style="red") + Text(message))
    sys.exit(2)
