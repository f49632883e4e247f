"""The communication and straggler model of Part 4, pure: an alpha-beta cost of DDP's gradient all-reduce over a
two-level topology, the expected slowest of N workers, and the predictions built on them (update time,
throughput, speed-up, scaling efficiency, time to a target training loss). Seconds and bytes throughout."""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

DDP_BUCKET_BYTES = 25 * 2**20  # DDP's bucket_cap_mb=25 is in MiB (it multiplies by 1024 * 1024)
DDP_FIRST_BUCKET_BYTES = 2**20  # torch.distributed's _DEFAULT_FIRST_BUCKET_BYTES: the first bucket is 1 MiB
BACKWARD_SHARE = 2 / 3  # backward ~ 2x forward: the part of a micro-iteration that all-reduce can hide under
BOOTSTRAP_FRACTION = 0.25  # resample while N <= this share of the samples; beyond, the bootstrap max saturates
QUANTILE_POINTS = 4000  # midpoint rule for the fitted distribution's expected maximum


@dataclass(frozen=True)
class Link:
    """One interconnect: per-message latency (alpha) and bandwidth per direction (1/beta), with where the
    bandwidth comes from and how its source states it (GB/s = 1e9 bytes/s; Gb/s = 1e9 bits/s = GB/s / 8)."""

    key: str
    name: str
    latency_s: float
    bandwidth_gb_s: float  # GB/s per direction, the unit every formula here uses
    stated: str  # as the source states it
    source: str
    kind: str  # "intra" (GPUs in a node) or "network" (between nodes)


LATENCY_NOTE = ("latencies are per ring step and assumed (order of NCCL's tuning model, src/graph/tuning.cc: "
                "about 1 us per intra-node hop, several us per network hop; TCP Ethernet tens of us)")
PRESETS = {link.key: link for link in (
    Link("nvlink", "NVLink 4", 1e-6, 450.0, "900 GB/s bidirectional per GPU (18 links)",
         "NVIDIA H100 Tensor Core GPU datasheet", "intra"),
    Link("pcie4", "PCIe Gen4 x16", 2e-6, 32.0, "16 GT/s per lane: about 32 GB/s per direction at x16",
         "PCI-SIG, PCI Express Base Specification 4.0", "intra"),
    Link("pcie5", "PCIe Gen5 x16", 2e-6, 64.0, "32 GT/s per lane: about 64 GB/s per direction at x16",
         "PCI-SIG, PCI Express Base Specification 5.0", "intra"),
    Link("ib-hdr", "InfiniBand HDR", 5e-6, 25.0, "200 Gb/s per port",
         "NVIDIA ConnectX-6 / Quantum HDR product briefs", "network"),
    Link("ib-ndr", "InfiniBand NDR", 5e-6, 50.0, "400 Gb/s per port",
         "NVIDIA ConnectX-7 / Quantum-2 NDR product briefs", "network"),
    Link("100gbe", "100 GbE", 10e-6, 12.5, "100 Gb/s", "IEEE 802.3ba / 802.3bj (100 Gigabit Ethernet)", "network"),
    Link("10gbe", "10 GbE", 30e-6, 1.25, "10 Gb/s", "IEEE 802.3ae (10 Gigabit Ethernet)", "network"),
)}


def custom_link(latency_us: float, bandwidth_gb_s: float, kind: str = "network") -> Link:
    return Link("custom", f"custom ({latency_us:g} us, {bandwidth_gb_s:g} GB/s)", latency_us * 1e-6, bandwidth_gb_s,
                f"{bandwidth_gb_s:g} GB/s (given)", "given by the user", kind)


@dataclass(frozen=True)
class Topology:
    """GPUs per node joined by `intra`, nodes joined by `network` (hierarchical: ring in, ring across), through
    `nics_per_node` network cards per node (None: one per GPU, as in DGX/HGX nodes)."""

    name: str
    intra: Link | None
    network: Link | None
    gpus_per_node: int  # a topology with no network puts every worker in one node
    nics_per_node: int | None = None

    @property
    def nics(self) -> int:
        return nics_resolved(self.gpus_per_node, self.nics_per_node)


def nics_resolved(gpus_per_node: int, nics_per_node: int | None) -> int:
    """Network cards per node: as given, or (None, 'auto') one per GPU."""
    return gpus_per_node if nics_per_node is None else nics_per_node


def preset_topologies(gpus_per_node: int = 8, intra: str = "nvlink", extra: list[Link] = (),
                      nics_per_node: int | None = None) -> list[Topology]:
    """An intra-node preset alone: all N on that fabric. A network preset: `gpus_per_node` per node on `intra`,
    nodes on the network through `nics_per_node` cards each (None: one per GPU)."""
    inside = PRESETS[intra]
    nics = nics_resolved(gpus_per_node, nics_per_node)
    out = []
    for link in [*PRESETS.values(), *extra]:
        if link.kind == "intra":
            out.append(Topology(f"{link.name} (all N on it)", link, None, 10**9))
        else:
            out.append(Topology(f"{link.name} ({gpus_per_node}/node on {inside.name}, {nics} NIC"
                                f"{'s' if nics > 1 else ''}/node)", inside, link, gpus_per_node, nics))
    return out


def bucket_count(gradient_bytes: float, bucket_bytes: float = DDP_BUCKET_BYTES,
                 first_bytes: float = DDP_FIRST_BUCKET_BYTES) -> int:
    """DDP sends the gradient in buckets: a small first one (ready early in backward), then buckets of at most
    bucket_bytes; each pays the latency once."""
    if gradient_bytes <= first_bytes:
        return 1
    return 1 + math.ceil((gradient_bytes - first_bytes) / bucket_bytes)


def ring_allreduce_s(size_bytes: float, workers: int, link: Link, messages: int = 1) -> float:
    """Ring all-reduce of size_bytes among `workers`: 2(p-1) steps, each moving size/p over the link;
    alpha paid per step and per message (bucket), beta on the whole size: 2(p-1) a m + 2(p-1)/p S / B."""
    if workers <= 1:
        return 0.0
    steps = 2 * (workers - 1)
    return steps * link.latency_s * messages + steps / workers * size_bytes / (link.bandwidth_gb_s * 1e9)


def allreduce_s(gradient_bytes: float, workers: int, topology: Topology,
                bucket_bytes: float = DDP_BUCKET_BYTES) -> float:
    """Hierarchical all-reduce: reduce-scatter and all-gather inside each node (one ring, 2(g-1) steps), an
    all-reduce across nodes in between. The node's gradient crosses the network split over its cards: one ring
    per card, in parallel, each on S / cards (each pays the latency, so alpha is not divided)."""
    buckets = bucket_count(gradient_bytes, bucket_bytes)
    per_node = min(workers, topology.gpus_per_node)
    nodes = math.ceil(workers / topology.gpus_per_node)
    total = ring_allreduce_s(gradient_bytes, per_node, topology.intra, buckets) if topology.intra else 0.0
    if nodes > 1:
        total += ring_allreduce_s(gradient_bytes / topology.nics, nodes, topology.network, buckets)
    return total


def bootstrap_expected_max(samples, n: int) -> float:
    """E[max of n draws with replacement from the samples], exactly: sum x_(i) ((i/m)^n - ((i-1)/m)^n)."""
    x = np.sort(np.asarray(samples, dtype=float))
    i = np.arange(1, len(x) + 1) / len(x)
    return float(np.sum(x * (i ** n - (i - 1 / len(x)) ** n)))


def fit_shifted_lognormal(samples) -> tuple[float, float, float]:
    """(shift, mu, sigma) of shift + lognormal(mu, sigma) by maximum likelihood over a grid of shifts below
    the smallest sample (a floor: no micro-iteration is faster than the work it does)."""
    x = np.asarray(samples, dtype=float)
    low = float(x.min())
    spread = max(float(np.median(x)) - low, 1e-12 * max(abs(low), 1.0))
    best = None
    for shift in low - spread * np.geomspace(1e-3, max(low / spread, 1e-3) if low > 0 else 1e-3, 200):
        if shift >= low:
            continue
        y = np.log(x - shift)
        sigma = max(float(y.std()), 1e-12)
        loglik = -float(y.sum()) - len(x) * math.log(sigma)
        if best is None or loglik > best[0]:
            best = (loglik, float(shift), float(y.mean()), sigma)
    return best[1], best[2], best[3]


def fitted_expected_max(samples, n: int) -> float:
    """E[max of n] under the fitted shifted lognormal: shift + int_0^1 exp(mu + sigma Phi^-1(u^(1/n))) du."""
    shift, mu, sigma = fit_shifted_lognormal(samples)
    u = (np.arange(QUANTILE_POINTS) + 0.5) / QUANTILE_POINTS
    z = np.array([NormalDist().inv_cdf(min(v, 1 - 1e-16)) for v in u ** (1.0 / n)])
    return float(shift + np.mean(np.exp(mu + sigma * z)))


def expected_max(samples, n: int, fraction: float = BOOTSTRAP_FRACTION) -> tuple[float, str]:
    """The expected slowest of n workers' micro-iterations, and how it was estimated: resampled while n is
    small against the samples, from the fitted distribution beyond (where a bootstrap saturates at the
    largest sample)."""
    if n <= max(1, fraction * len(samples)):
        return bootstrap_expected_max(samples, n), "bootstrap"
    return fitted_expected_max(samples, n), "lognormal fit"


def predict(micro_s, step_s: float, gradient_bytes: float, topologies: list[Topology], ns, micro_batch: int = 64,
            overlap: float = 0.0, bucket_bytes: float = DDP_BUCKET_BYTES) -> list[dict]:
    """One row per (topology, N): compute (expected slowest micro-iteration + step), all-reduce, exposed
    all-reduce (after hiding `overlap` x backward under it), update time, throughput, speed-up, efficiency."""
    micro_s = np.asarray(micro_s, dtype=float)
    one = float(micro_s.mean()) + step_s  # one worker: no all-reduce, no waiting
    slowest = {n: expected_max(micro_s, n) for n in ns}
    rows = []
    for topo in topologies:
        for n in ns:
            worst, method = slowest[n]
            comm = allreduce_s(gradient_bytes, n, topo, bucket_bytes)
            exposed = max(0.0, comm - overlap * BACKWARD_SHARE * worst)
            update = worst + step_s + exposed
            throughput = micro_batch * n / update
            rows.append({"interconnect": topo.name, "workers": n, "compute_s": worst + step_s,
                         "straggler_s": worst - float(micro_s.mean()), "allreduce_s": comm, "exposed_s": exposed,
                         "update_s": update, "throughput_img_s": throughput,
                         "speedup": throughput / (micro_batch / one),
                         "efficiency": throughput / (micro_batch / one) / n,
                         "straggler_method": method})
    return rows


def trailing_mean(values, window: int) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(idx - window, 0)
    return (sums[idx] - sums[start]) / (idx - start)


def updates_to_target(losses, target: float, window: int) -> int | None:
    """Updates until the trailing mean (over `window` updates, an epoch) of the training loss first reaches
    the target; None if it never does."""
    hit = np.nonzero(trailing_mean(losses, window) <= target)[0]
    return int(hit[0]) + 1 if len(hit) else None


def updates_curve(measured: dict[int, int], ns) -> dict[int, tuple[float, bool]]:
    """Updates to target at every N (global batch 64N): log-log interpolation between the measured batches;
    beyond them the nearest segment's slope, held within [-1, 0] (perfect scaling to none), marked extrapolated."""
    ks = sorted(measured)
    logk = np.log(ks)
    logu = np.log([measured[k] for k in ks])
    out = {}
    for n in ns:
        x = math.log(n)
        if n in measured:
            out[n] = (float(measured[n]), False)
            continue
        inside = ks[0] < n < ks[-1]
        if inside:
            value = float(np.exp(np.interp(x, logk, logu)))
        else:
            if len(ks) == 1:
                slope, base = -1.0, 0
            else:
                base = 0 if n < ks[0] else -1
                pair = (0, 1) if base == 0 else (-2, -1)
                slope = (logu[pair[1]] - logu[pair[0]]) / (logk[pair[1]] - logk[pair[0]])
            slope = min(0.0, max(-1.0, slope))
            value = float(np.exp(logu[base] + slope * (x - logk[base])))
        out[n] = (value, not inside)
    return out


def best_workers(rows: list[dict], curve: dict[int, tuple[float, bool]], measured_only: bool = False
                 ) -> dict[str, dict]:
    """Per interconnect, the N with the least time to target (updates at N x predicted update time at N);
    measured_only: among the N whose updates were measured or interpolated, not extrapolated."""
    best = {}
    for row in rows:
        updates, extrapolated = curve[row["workers"]]
        row.update(updates_to_target=updates, time_to_target_s=updates * row["update_s"], extrapolated=extrapolated)
        if measured_only and extrapolated:
            continue
        if row["interconnect"] not in best or row["time_to_target_s"] < best[row["interconnect"]]["time_to_target_s"]:
            best[row["interconnect"]] = row
    return best
