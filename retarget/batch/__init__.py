"""Batch processing: many source × driver jobs, locally (process pool) or on a Ray cluster.

- :mod:`retarget.batch.jobs`: jobs files (CSV/TOML) and sources × drivers;
- :mod:`retarget.batch.plan`: validation, DensePose sharing groups, verified skipping;
- :mod:`retarget.batch.worker`: a worker (models loaded once) running one job at a time;
- :mod:`retarget.batch.run`: :func:`run_batch` (the Python API of ``retarget batch``: arguments,
  plan, run, :class:`BatchResult`), driver-aware scheduling, progress and the report, local executor;
- :mod:`retarget.batch.ray_backend`: Ray actors as workers;
- :mod:`retarget.batch.report`: ``batch_report.json``.

See ``docs/batch.md``.
"""

from retarget.batch.jobs import BatchJob, cross_jobs, default_output_name, load_jobs_file
from retarget.batch.plan import BatchPlan, make_plan
from retarget.batch.report import REPORT_NAME, load_report, summary_table
from retarget.batch.run import BatchResult, LocalExecutor, default_threads, default_workers, run_batch, run_plan
from retarget.batch.worker import BatchWorker, WorkerConfig

__all__ = [
           "REPORT_NAME",
           "BatchJob",
           "BatchPlan",
    "BatchResult",
           "BatchWorker",
           "LocalExecutor",
           "WorkerConfig",
           "cross_jobs",
           "default_output_name",
           "default_threads",
           "default_workers",
           "load_jobs_file",
           "load_report",
           "make_plan",
    "run_batch",
           "run_plan",
           "summary_table",
]
