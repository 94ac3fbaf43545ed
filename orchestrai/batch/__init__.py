"""Batches: one run of a pipeline per data row (`orchestrai batch`). See batch.py and executor.py."""

from __future__ import annotations

from .batch import BatchHook, BatchOptions, BatchSummary, Tally, run_batch, run_batch_sync
from .executor import Executor, LocalExecutor, RowTask, RunRow
from .results import RowResult, read_results
from .rowrunner import RowRunner, run_row_sync
from .rows import Row, read_rows

__all__ = ["BatchHook", "BatchOptions", "BatchSummary", "Executor", "LocalExecutor", "Row", "RowResult", "RowRunner",
           "RowTask", "RunRow", "Tally", "read_results", "read_rows", "run_batch", "run_batch_sync", "run_row_sync"]
