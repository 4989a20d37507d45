"""`leanlm models`: the registry of named models and what `$LEANLM_HOME` has cached."""

from rich.table import Table

from leanlm.cli.console import console
from leanlm.home import leanlm_home
from leanlm.models import DEFAULT_MODEL, REGISTRY


def models():
    """List the named models, whether their package is installed, and the converted models on disk."""
    from leanlm.models.gguf_cache import cached_models

    table = Table(title="Named models")
    for column in ("name", "package", "installed"):
        table.add_column(column)
    for entry in REGISTRY.values():
        name = f"{entry.name} (default)" if entry.name == DEFAULT_MODEL else entry.name
        table.add_row(name, entry.package, "yes" if entry.is_installed() else f"no: {entry.install}")
    console.print(table)
    for entry in REGISTRY.values():
        console.print(f"[bold]{entry.name}[/bold]: {entry.description}", highlight=False)

    home = leanlm_home()
    cached = cached_models(home)
    table = Table(title=f"Converted models in {home / 'models'}")
    for column in ("directory", "size"):
        table.add_column(column)
    for record in cached:
        table.add_row(record["name"], f"{record['bytes'] / 2**20:.0f} MiB")
    if not cached:
        table.add_row("(none yet: the first load of a GGUF model converts it)", "")
    console.print(table)
