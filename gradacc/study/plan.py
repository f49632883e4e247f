"""The plan of a study: its configurations (a part of one protocol, or the seeds of one K trained together), in the
sweep's order, and how they are split over the processes of a spread sweep."""
from __future__ import annotations

from dataclasses import dataclass

from gradacc.core.config import Protocol
from gradacc.core.errors import ConfigError
from gradacc.names import run_name
from gradacc.parts.context import Context


@dataclass(frozen=True)
class Config:
    """One configuration of the study: a part of one protocol (one k, one seed)."""

    part: str
    protocol: Protocol

    @property
    def label(self) -> str:
        return f"{run_name(self.part, self.protocol.k, self.protocol.smoke)} seed {self.protocol.seed}"

    @property
    def work(self) -> int:
        """Micro-batches through forward and backward: what `assign` balances (evaluation left out)."""
        p = self.protocol
        return p.warmup_micro_iters + p.timed_micro_iters if self.part == "micro" else p.total_updates * p.k


@dataclass(frozen=True)
class Together:
    """The converge runs of several seeds of one K, trained together on one device (gradacc/parts/together.py): one
    unit of the sweep, one run per seed, no timings."""

    protocols: tuple[Protocol, ...]
    part = "converge"

    @property
    def label(self) -> str:
        first = self.protocols[0]
        return (f"{run_name(self.part, first.k, first.smoke)} seeds {', '.join(str(p.seed) for p in self.protocols)} "
                "together")

    @property
    def work(self) -> int:
        """Each seed's micro-batches, as if run alone: how much the device gains by sharing is not known here."""
        return sum(Config(self.part, p).work for p in self.protocols)


def trains_together(choice: str, ctx: Context, protocols: list[Protocol]) -> bool:
    """--seeds-together: true, false, or auto (on a GPU, where the seeds can share the device). Not with CUDA graphs
    yet: graphs that replay side by side each need a cuBLAS workspace of their own (gradacc/core/graphs.py captures
    them so), not yet checked on a GPU; auto then runs the seeds one after another."""
    graphs = any(p.cuda_graphs for p in protocols)
    if choice == "true" and graphs:
        raise ConfigError("--seeds-together true does not work with --cuda-graphs yet (not yet checked on a GPU: "
                          "docs/seeds.md); leave one of them out")
    return not graphs and (choice == "true" or (choice == "auto" and ctx.runtime.is_cuda))


def configurations(protocols: list[Protocol], parts: list[str], together: bool = False) -> list[Config | Together]:
    """The study's configurations in the sweep's order: for each protocol (seed, then k), each part. `together`
    (where the study has converge runs and several seeds): every part for the first seed only, then the other
    seeds' converge runs of each K trained together; their other parts would only repeat the first seed's timings."""
    first_seed = protocols[0].seed
    if not together or "converge" not in parts or all(p.seed == first_seed for p in protocols):
        return [Config(part, protocol) for protocol in protocols for part in parts]
    units: list[Config | Together] = [Config(part, p) for p in protocols if p.seed == first_seed for part in parts]
    for k in dict.fromkeys(p.k for p in protocols):
        units.append(Together(tuple(p for p in protocols if p.k == k and p.seed != first_seed)))
    return units


def assign(configs: list[Config | Together], world: int) -> list[int]:
    """The rank of each configuration: longest first, each to the rank with the least work so far (ties: the
    lower rank). Deterministic, and no rank's load exceeds the mean by more than one configuration; in the default
    study (micro and converge for K = 1, 2, 4, 8) two ranks get two converge and two micro runs each."""
    loads, ranks = [0] * world, [0] * len(configs)
    for index in sorted(range(len(configs)), key=lambda i: -configs[i].work):  # stable: ties in sweep order
        rank = min(range(world), key=lambda r: loads[r])
        ranks[index] = rank
        loads[rank] += configs[index].work
    return ranks


def seed_labels(unit: Config | Together) -> list[str]:
    """A label per run: one for a configuration, one per seed for seeds trained together."""
    if isinstance(unit, Config):
        return [unit.label]
    return [Config(unit.part, protocol).label for protocol in unit.protocols]


def run_count(units: list[Config | Together]) -> int:
    return sum(len(seed_labels(unit)) for unit in units)
