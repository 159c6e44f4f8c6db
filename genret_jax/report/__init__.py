"""Paper tables over seeds with paired t-test markers, JSON summaries and sweep plots."""

from genret_jax.analysis.plots import sweep_plot
from genret_jax.report.sweeps import write_sweep
from genret_jax.report.significance import HIGHER, LOWER, PairedTest, paired_ttest
from genret_jax.report.tables import (collect_seeds, markdown_table, metric_label, summarize,
                                      write_paper_table)

__all__ = ["HIGHER", "LOWER", "PairedTest", "paired_ttest", "collect_seeds", "markdown_table",
           "metric_label", "summarize", "write_paper_table", "sweep_plot", "write_sweep"]
