"""PNG plots of the availability study (matplotlib, an optional extra: ``pyclm[study]``)."""

from __future__ import annotations

from pathlib import Path

from .availability import NAMED_GAPS, NAMED_KS, Results, StudyConfig


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_plots(config: StudyConfig, results: Results, out: Path) -> list[Path]:
    """Availability against the gap (one plot per named k) and against k (per named gap)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for k in (k for k in NAMED_KS if k in config.ks):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for i, policy in enumerate(config.policies):
            xs, ys, lo, hi = [], [], [], []
            for gap in config.gaps:
                _, n, yes, low, high = results.summary(k, gap)[i]
                if n:
                    xs.append(gap)
                    ys.append(100 * yes / n)
                    lo.append(max(0.0, 100 * (yes / n - low)))
                    hi.append(max(0.0, 100 * (high - yes / n)))
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=2, label=policy)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("mean time between changes (message rounds)")
        ax.set_ylabel("% of runs with a primary")
        ax.set_title(f"{config.processes} processes, {k} change{'s' if k > 1 else ''} per run")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        path = out / f"availability_vs_gap_k{k}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    for gap in (g for g in NAMED_GAPS if g in config.gaps):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for i, policy in enumerate(config.policies):
            xs, ys = [], []
            for k in config.ks:
                _, n, yes, _, _ = results.summary(k, gap)[i]
                if n:
                    xs.append(k)
                    ys.append(100 * yes / n)
            ax.plot(xs, ys, marker="o", label=policy)
        ax.set_xlabel("connectivity changes per run")
        ax.set_ylabel("% of runs with a primary")
        ax.set_title(f"{config.processes} processes, mean gap {gap:g} rounds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        path = out / f"availability_vs_k_gap{gap:g}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
