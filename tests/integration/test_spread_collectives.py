"""The spread sweep's two collectives (gradacc/distributed/spread.py) between two real gloo processes: what rank 0
broadcasts and gathers arrives whole, and a rank waiting in one still handles a signal at once (torchrun's SIGTERM
after another rank died: the run must end KILLED there, not be left RUNNING by torchrun's SIGKILL 30 s later)."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

RANK_SCRIPT = """
import os, signal, sys, time
import torch.distributed as dist
from gradacc.distributed.spread import broadcast, gather
from gradacc.study.sweep import Outcome

signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))
rank, how = int(os.environ["RANK"]), sys.argv[1]
dist.init_process_group("gloo", init_method=os.environ["STORE"], rank=rank, world_size=2)
plan = broadcast({"study": "s1", "shares": [["a"], ["b" * 5000]]} if rank == 0 else None)
print("plan", plan["study"], len(plan["shares"][1][0]), flush=True)
if how == "absent" and rank == 1:
    time.sleep(600)  # never joins the gather
outcome = Outcome(rank)
outcome.ran = [f"run-{rank}-{i}" for i in range(rank * 50 + 1)]
print("gathering", flush=True)
outcomes = gather(outcome, 2)
print("gathered", [(o.rank, len(o.ran)) for o in outcomes] if outcomes else None, flush=True)
dist.destroy_process_group()
"""


def start_ranks(how: str, folder) -> list[subprocess.Popen]:
    ranks = []
    for rank in range(2):  # a file store: no port to race for
        env = {**os.environ, "RANK": str(rank), "STORE": f"file://{folder / 'store'}", "OMP_NUM_THREADS": "1"}
        ranks.append(subprocess.Popen([sys.executable, "-c", RANK_SCRIPT, how], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    return ranks


def stop(ranks: list[subprocess.Popen]) -> None:
    for process in ranks:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_the_plan_and_every_outcome_arrive_whole(tmp_path):
    ranks = start_ranks("both", tmp_path)
    try:
        outputs = [process.communicate(timeout=120) for process in ranks]
    finally:
        stop(ranks)
    for process, (out, err) in zip(ranks, outputs):
        assert process.returncode == 0, err[-2000:]
        assert "plan s1 5000" in out, out
    assert "gathered [(0, 1), (1, 51)]" in outputs[0][0], outputs[0][0]
    assert "gathered None" in outputs[1][0], outputs[1][0]


def test_a_rank_waiting_in_the_gather_handles_sigterm_at_once(tmp_path):
    ranks = start_ranks("absent", tmp_path)
    try:
        rank_0 = ranks[0]
        deadline = time.monotonic() + 120
        printed = b""  # read from the pipe itself: a text reader's buffer would hide lines from select
        while b"gathering" not in printed:
            assert time.monotonic() < deadline, "rank 0 never reached the gather"
            if select.select([rank_0.stdout], [], [], 1)[0]:
                chunk = os.read(rank_0.stdout.fileno(), 4096)
                assert chunk, rank_0.stderr.read()[-2000:]
                printed += chunk
        time.sleep(1)  # inside the gather, waiting for rank 1
        rank_0.send_signal(signal.SIGTERM)
        start = time.monotonic()
        rank_0.wait(timeout=30)
        assert time.monotonic() - start < 15  # torchrun waits 30 s before its SIGKILL
        assert rank_0.returncode == 7  # the handler ran: Python got control back while the gather waited
    finally:
        stop(ranks)
