"""compare: run directories → tables (summary.md, summary.csv), PNG figures and a self-contained report.html.

    python -m ablate.compare multirun/2026-11-02/10-00-00 --out report/

`build_report(inputs, out, options, baselines)` does the same from Python. It reads only the run-dir files
(config.yaml, metrics.jsonl, summary.json), never W&B. docs/compare.md describes every flag and output.
"""

from ablate.compare.build import NoRuns, Report, build_report
from ablate.compare.charts import Options

__all__ = ["NoRuns", "Options", "Report", "build_report"]
