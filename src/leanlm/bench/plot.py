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


def plot_real_experts_histogram(rows: list[dict], path: Path, title: str) -> None:
    """Plot, per row with a histogram, the share of (token, layer) pairs that used 0, 1, 2, ... real experts."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    shown = [row for row in rows if row.get("real_experts_histogram")]
    width = 0.8 / max(len(shown), 1)
    figure, axes = plt.subplots(figsize=(9, 5))
    for index, row in enumerate(shown):
        counts = row["real_experts_histogram"]
        total = sum(counts)
        positions = [count + index * width - 0.4 + width / 2 for count in range(len(counts))]
        label = f"{row['method']} (mean {row['avg_real_experts']:.2f}, ppl {row['ppl']:.2f})"
        axes.bar(positions, [c / total for c in counts], width=width, label=label)
    axes.set_xlabel("real experts per token and layer")
    axes.set_ylabel("share of (token, layer) pairs")
    axes.set_title(title)
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
