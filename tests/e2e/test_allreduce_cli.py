"""`gradacc allreduce` end to end (torchrun, gloo on CPU): the per-size series and the ring fit logged as an
`allreduce-w2` run; bad input is one line."""
from __future__ import annotations

import pytest

from tests.support.e2e import all_runs, assert_one_error_line, history, run_cli


@pytest.mark.slow
def test_the_benchmark_logs_sizes_and_the_ring_fit(tracking_store):
    from mlflow.tracking import MlflowClient
    result = run_cli(["allreduce", "--workers", "2", "--min-kib", "4", "--max-mib", "1", "--warmup", "1",
                      "--iters", "3", "--device", "cpu"])
    assert result.code == 0, result.err
    assert "ring model t = 2(N-1) alpha + 2(N-1)/N S / B at N=2" in result.out
    client = MlflowClient()
    run, = all_runs(client)
    assert run.info.run_name == "allreduce-w2" and run.data.tags["gradacc.part"] == "allreduce"
    assert run.data.params["workers"] == "2" and run.data.params["backend"] == "gloo"
    m = run.data.metrics
    assert m["alpha_us_low"] <= m["alpha_us"] <= m["alpha_us_high"] and m["bandwidth_gb_s"] > 0
    assert m["fit_dof"] == 9 - 2  # 4 KiB .. 1 MiB, doubling: 9 sizes
    steps, times = history(client, run.info.run_id, "allreduce_size_us")
    assert steps == [4096 * 2 ** i for i in range(9)] and all(t > 0 for t in times)
    _, algbw = history(client, run.info.run_id, "algbw_size_gb_s")
    _, busbw = history(client, run.info.run_id, "busbw_size_gb_s")
    assert busbw == pytest.approx(algbw)  # 2(N-1)/N = 1 at N = 2
    assert algbw[0] == pytest.approx(4096 / (times[0] / 1e6) / 1e9)


@pytest.mark.parametrize("argv, contains", [
    (["allreduce", "--workers", "1"], "1 is not in the range x>=2"),
    (["allreduce", "--iters", "1"], "1 is not in the range x>=2"),
    (["allreduce", "--min-kib", "1024", "--max-mib", "1", "--device", "cpu"], "3 or more message sizes"),
    (["allreduce", "--min-kib", "2048", "--max-mib", "1", "--device", "cpu"], "min <= max"),
])
def test_bad_benchmark_options_are_one_line(argv, contains, tracking_store):
    result = run_cli(argv)
    assert result.code != 0
    assert_one_error_line(result, contains)
