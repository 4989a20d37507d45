"""PNG plots of benchmark rows."""

from pathlib import Path


def plot_ppl_by_budget(rows: list[dict], path: Path, title: str) -> None:
    """Plot continuation perplexity against KV budget, one line per method, log scale."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for method in sorted({row["method"] for row in rows}):
        points = sorted((row["budget"], row["ppl"]) for row in rows if row["method"] == method)
        axes.plot([b for b, _ in points], [p for _, p in points], marker="o", label=method)
    axes.set_xlabel("KV cache budget (fraction of full-cache bytes)")
    axes.set_ylabel("continuation perplexity")
    axes.set_yscale("log")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
