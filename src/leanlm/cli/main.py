"""The `leanlm` command: parse, call the library, print. Errors become one line and exit code 2."""

import sys

import click
import typer

from leanlm.cli import bench_cmd, data_cmd, eval_cmd, generate_cmd, models_cmd
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
app.add_typer(bench_cmd.app, name="bench")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a `LeanLMError` prints as `error: ...` on stderr and exits with code 2."""
    try:
        app(args=argv, standalone_mode=False)
    except LeanLMError as err:
        err_console.print(f"[red]error:[/red] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except click.exceptions.Abort:
        err_console.print("interrupted")
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
