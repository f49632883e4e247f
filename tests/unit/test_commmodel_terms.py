"""Each term of the Part 4 model's `predict()` against numbers worked out by hand: compute, the slowest of N
(straggler), latency, bandwidth (the ring factor), buckets, overlap, and the two-level topology with one network
card per node and with one per GPU. The expectations are literal arithmetic, never the module's own helpers, so
that breaking any one term fails here."""
from __future__ import annotations

import pytest

from gradacc.analysis.commmodel import model as cm

# 16 micro-iterations, half 0.1 s and half 0.3 s: mean 0.2 s. With replacement, the slowest of n is 0.1 s only
# when all n draws are, so E[max of n] = 0.1 * (1/2)^n + 0.3 * (1 - (1/2)^n): 0.25 at n = 2, 0.2875 at n = 4
# (both resampled exactly: n <= 16 / 4).
MICRO = [0.1] * 8 + [0.3] * 8
STEP = 0.01
SIZE = 1e8  # bytes; DDP's buckets: 1 MiB, then ceil((1e8 - 1,048,576) / 26,214,400) = ceil(3.77) = 4 of 25 MiB
BUCKETS = 5
INTRA = cm.Link("i", "intra", 1e-6, 100.0, "100 GB/s", "test", "intra")  # 1 us, 1e11 bytes/s
NET = cm.Link("n", "net", 5e-6, 10.0, "10 GB/s", "test", "network")  # 5 us, 1e10 bytes/s
SLOW = cm.Link("s", "slow", 10e-6, 1.0, "1 GB/s", "test", "intra")  # 10 us, 1e9 bytes/s
ONE_NODE = cm.Topology("one node", INTRA, None, 10**9)


def rows_by_n(micro, topology, ns, **options) -> dict[int, dict]:
    return {r["workers"]: r for r in cm.predict(micro, STEP, SIZE, [topology], ns, **options)}


def test_compute_is_the_slowest_of_n_plus_the_step():
    rows = rows_by_n(MICRO, ONE_NODE, [1, 2, 4])
    assert rows[1]["compute_s"] == pytest.approx(0.2 + 0.01, rel=1e-12)  # one worker: the mean, no waiting
    assert rows[1]["straggler_s"] == pytest.approx(0.0, abs=1e-12)
    assert rows[2]["compute_s"] == pytest.approx(0.1 * 0.25 + 0.3 * 0.75 + 0.01, rel=1e-12)  # 0.26
    assert rows[2]["straggler_s"] == pytest.approx(0.25 - 0.2, rel=1e-9)  # waiting for the slower of two
    assert rows[4]["compute_s"] == pytest.approx(0.1 / 16 + 0.3 * 15 / 16 + 0.01, rel=1e-12)  # 0.2975
    assert rows[4]["straggler_s"] == pytest.approx(0.2875 - 0.2, rel=1e-9)
    assert rows[2]["straggler_method"] == rows[4]["straggler_method"] == "bootstrap"


def test_latency_and_bandwidth_terms_of_one_ring():
    rows = rows_by_n(MICRO, ONE_NODE, [1, 2, 4])
    assert rows[1]["allreduce_s"] == 0.0
    # 2(p-1) steps x 1 us x 5 buckets  +  2(p-1)/p x 1e8 bytes / 1e11 bytes/s
    assert rows[2]["allreduce_s"] == pytest.approx(2 * 1 * 1e-6 * 5 + 2 * 1 / 2 * 1e8 / 1e11, rel=1e-12)  # 1.010 ms
    assert rows[4]["allreduce_s"] == pytest.approx(2 * 3 * 1e-6 * 5 + 2 * 3 / 4 * 1e8 / 1e11, rel=1e-12)  # 1.530 ms


def test_buckets_each_pay_the_latency():
    rows = rows_by_n(MICRO, ONE_NODE, [2], bucket_bytes=50 * 2**20)  # 1 MiB + ceil(98,951,424 / 52,428,800) = 3
    assert rows[2]["allreduce_s"] == pytest.approx(2 * 1 * 1e-6 * 3 + 1e8 / 1e11, rel=1e-12)  # 1.006 ms
    small = cm.predict(MICRO, STEP, 1e6, [ONE_NODE], [2])[0]  # under 1 MiB: one bucket
    assert small["allreduce_s"] == pytest.approx(2 * 1 * 1e-6 * 1 + 1e6 / 1e11, rel=1e-12)  # 12 us


def test_update_time_throughput_speedup_and_efficiency():
    rows = rows_by_n(MICRO, ONE_NODE, [1, 2])
    update = 0.25 + 0.01 + 0.00101  # slowest of two + step + all-reduce (nothing hidden)
    assert rows[2]["exposed_s"] == pytest.approx(0.00101, rel=1e-9)
    assert rows[2]["update_s"] == pytest.approx(update, rel=1e-12)
    assert rows[2]["throughput_img_s"] == pytest.approx(2 * 64 / update, rel=1e-12)
    assert rows[2]["speedup"] == pytest.approx((2 * 64 / update) / (64 / 0.21), rel=1e-12)  # against 0.21 s alone
    assert rows[2]["efficiency"] == pytest.approx(0.21 / update, rel=1e-12)
    assert rows[1]["update_s"] == pytest.approx(0.21, rel=1e-12) and rows[1]["speedup"] == pytest.approx(1.0)


def test_overlap_hides_the_all_reduce_under_the_backward_pass():
    slow = cm.Topology("slow", SLOW, None, 10**9)
    comm = 2 * 1 * 10e-6 * 5 + 1 * 1e8 / 1e9  # 0.1001 s at N = 2
    none, = cm.predict(MICRO, STEP, SIZE, [slow], [2])
    assert none["allreduce_s"] == pytest.approx(comm, rel=1e-12) and none["exposed_s"] == pytest.approx(comm)
    part, = cm.predict(MICRO, STEP, SIZE, [slow], [2], overlap=0.3)
    hidden = 0.3 * (2 / 3) * 0.25  # 0.05 s: 30% of the backward pass (2/3) of the slowest micro-iteration
    assert part["exposed_s"] == pytest.approx(comm - hidden, rel=1e-9)  # 0.0501
    assert part["allreduce_s"] == pytest.approx(comm, rel=1e-12)  # the all-reduce itself is as long
    assert part["update_s"] == pytest.approx(0.25 + 0.01 + 0.0501, rel=1e-9)
    whole, = cm.predict(MICRO, STEP, SIZE, [slow], [2], overlap=1.0)  # 0.1667 s of backward > 0.1001 s
    assert whole["exposed_s"] == 0.0 and whole["update_s"] == pytest.approx(0.26, rel=1e-12)


# Two levels, 8 GPUs per node: a ring of 8 on INTRA, then a ring of the nodes on NET.
INTRA_8 = 2 * 7 * 1e-6 * 5 + 2 * 7 / 8 * 1e8 / 1e11  # 70 us + 1.75 ms = 1.820 ms


def test_two_level_with_one_network_card_per_node():
    topo = cm.Topology("t", INTRA, NET, 8, nics_per_node=1)
    rows = rows_by_n(MICRO, topo, [8, 9, 16, 32])
    assert rows[8]["allreduce_s"] == pytest.approx(INTRA_8, rel=1e-12)  # one node: no network
    two_nodes = INTRA_8 + 2 * 1 * 5e-6 * 5 + 2 * 1 / 2 * 1e8 / 1e10  # + 50 us + 10 ms = 11.870 ms
    assert rows[9]["allreduce_s"] == pytest.approx(two_nodes, rel=1e-12)  # a second node, even with one GPU
    assert rows[16]["allreduce_s"] == pytest.approx(two_nodes, rel=1e-12)
    # 4 nodes: the whole 1e8 bytes through each node's one card, 2(4-1)/4 = 1.5 of it
    assert rows[32]["allreduce_s"] == pytest.approx(INTRA_8 + 2 * 3 * 5e-6 * 5 + 1.5 * 1e8 / 1e10, rel=1e-12)
    assert rows[32]["allreduce_s"] == pytest.approx(16.970e-3, rel=1e-12)


def test_two_level_with_one_network_card_per_gpu():
    eight = cm.Topology("t", INTRA, NET, 8, nics_per_node=8)
    # 8 rings in parallel, one per card, each on 1e8 / 8 bytes; each still pays the 2(4-1) steps' latency
    inter = 2 * 3 * 5e-6 * 5 + 1.5 * (1e8 / 8) / 1e10  # 150 us + 1.875 ms
    assert rows_by_n(MICRO, eight, [32])[32]["allreduce_s"] == pytest.approx(INTRA_8 + inter, rel=1e-12)  # 3.845 ms
    default = cm.Topology("t", INTRA, NET, 8)  # no count given: one card per GPU
    assert rows_by_n(MICRO, default, [32])[32]["allreduce_s"] == pytest.approx(3.845e-3, rel=1e-12)
    two = cm.Topology("t", INTRA, NET, 8, nics_per_node=2)
    assert rows_by_n(MICRO, two, [32])[32]["allreduce_s"] == pytest.approx(
        INTRA_8 + 2 * 3 * 5e-6 * 5 + 1.5 * (1e8 / 2) / 1e10, rel=1e-12)


def test_presets_32_gpus_on_infiniband_ndr_with_1_and_8_cards_per_node():
    """The DGX case: 4 nodes of 8 H100s on NVLink 4 (1 us, 450 GB/s), InfiniBand NDR between them (5 us, 50 GB/s),
    the 44,726,568-byte gradient in 3 buckets."""
    grad = 44_726_568
    intra = 2 * 7 * 1e-6 * 3 + 2 * 7 / 8 * grad / 450e9  # 42 us + 173.9 us
    one_card = intra + 2 * 3 * 5e-6 * 3 + 1.5 * grad / 50e9  # + 90 us + 1,341.8 us = 1,647.7 us
    per_gpu = intra + 2 * 3 * 5e-6 * 3 + 1.5 * grad / 8 / 50e9  # + 90 us + 167.7 us = 473.7 us
    for nics, expected in ((1, one_card), (None, per_gpu), (8, per_gpu)):
        ndr, = [t for t in cm.preset_topologies(8, "nvlink", nics_per_node=nics) if t.name.startswith("InfiniBand N")]
        assert ndr.name == f"InfiniBand NDR (8/node on NVLink 4, {nics or 8} NIC{'s' if nics != 1 else ''}/node)"
        row, = cm.predict([0.1] * 8, 0.0, grad, [ndr], [32])
        assert row["allreduce_s"] == pytest.approx(expected, rel=1e-12)
    assert one_card == pytest.approx(1647.7e-6, abs=0.1e-6) and per_gpu == pytest.approx(473.7e-6, abs=0.1e-6)
