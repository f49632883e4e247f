"""Query gradacc's runs from Python (the public interface; the code lives in gradacc/tracking/results.py):

    from gradacc.results import load_runs, load_series
    runs = load_runs(study="3f2a9c1e", parts=["converge"])     # one typed row per run
    series = load_series(runs, keys=["train_loss"])            # metric histories, long format
"""
from gradacc.tracking.results import SERIES_COLUMNS, EmptyResultWarning, load_runs, load_series, resolve_experiments

__all__ = ["SERIES_COLUMNS", "EmptyResultWarning", "load_runs", "load_series", "resolve_experiments"]
