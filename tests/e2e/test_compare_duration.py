"""The compare run's Duration covers its work: it starts when `gradacc compare` starts reading the store, before
any output is written, and ends after the last one (it used to open once all was written: 163 ms of a 3.8 s
command)."""
from __future__ import annotations

import time

import pytest

from tests.support.e2e import all_runs, run_cli, smoke_store

pytestmark = [pytest.mark.slow]


def test_the_compare_run_spans_the_comparison(tmp_path):
    with smoke_store(tmp_path) as client:
        made = run_cli(["sweep", "--ks", "1,2", "--parts", "micro", "--smoke", "--threads", "1",
                        "--experiment", "spans"])
        assert made.code == 0, made.err
        before = {r.info.run_id for r in all_runs(client)}
        started = time.time()
        result = run_cli(["compare", "--experiment", "spans"])
        ended = time.time()
        assert result.code == 0, result.err
        run, = [r for r in all_runs(client) if r.info.run_id not in before]
        assert run.data.tags["gradacc.part"] == "compare"
        folder = tmp_path / "store" / "compare-output" / "experiment-spans"
        outputs = [p.stat().st_mtime for p in folder.rglob("*") if p.is_file()]
        assert outputs
        ms = [int(t * 1000) for t in (started, min(outputs), max(outputs), ended)]  # MLflow's times: whole ms
        assert ms[0] <= run.info.start_time <= ms[1]  # before the first output is written
        assert ms[2] <= run.info.end_time <= ms[3]  # after the last
