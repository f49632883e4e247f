"""One command's request, frozen: built once where the command line (or `mlflow run`'s parameters) is read
(gradacc/cli/request.py) and carried whole to the parts, the sweep, the spread sweep and the DDP job. The params a
run logs are derived from it: the options as given, beside the resolved protocol and runtime."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace

from gradacc.core.config import Protocol


@dataclass(frozen=True)
class Settings:
    """Where the request runs, "auto" already resolved where it can be without the device: `threads` None is torch's
    default (one per physical core); `device` "auto" is resolved by core/runtime.py's `wants_cuda`, in one place."""

    device: str = "auto"
    threads: int | None = None
    tf32: str = "on"
    data_dir: str = "auto"

    @classmethod
    def of(cls, device: str = "auto", threads="auto", tf32: str = "on", data_dir: str | None = "auto") -> "Settings":
        """The settings of the options as given: threads "auto" as None (torch's default), no folder as "auto"."""
        return cls(device, None if threads == "auto" else int(threads), tf32, data_dir or "auto")

    @property
    def worker_threads(self) -> int:
        """The torch threads of each of several processes on one machine (DDP workers, all-reduce ranks): as given,
        and for auto one, since the processes share the cores."""
        return self.threads or 1


@dataclass(frozen=True)
class Request:
    """What to train (the protocols: each K and seed), where (Settings), into which experiment and study, and the
    options as the user gave them (`given`, the strings `mlflow run` logs for its parameters).

    `experiment` is the name or id given (None: $MLFLOW_EXPERIMENT_NAME, else MLflow's default); `experiment_id` is
    it resolved, once, by the process that writes the runs, before its first run. `study` None: a new study.
    `parent_only`: the given options that describe the parent run of a study (ks, parts, ...), not its children."""

    protocols: tuple[Protocol, ...]
    settings: Settings = Settings()
    given: tuple[tuple[str, str], ...] = ()
    experiment: str | None = None
    experiment_id: str | None = None
    study: str | None = None
    force: bool = False
    parts: tuple[str, ...] = ()
    parent_only: tuple[str, ...] = ()
    log_model: bool = False

    @property
    def protocol(self) -> Protocol:
        """The first protocol: a one-run command's only one; a study's first K and seed."""
        return self.protocols[0]

    @property
    def smoke(self) -> bool:
        return any(p.smoke for p in self.protocols)

    def given_params(self) -> dict[str, str]:
        """The command's options as given: a parent run's (or a one-run command's) params."""
        return dict(self.given)

    def child_params(self, protocol: Protocol) -> dict[str, str]:
        """The options as given of the run of `protocol` (a study's child): the parent's own left out, its k and
        seed its own."""
        own = {key: value for key, value in self.given if key not in self.parent_only}
        return dict(own, k=str(protocol.k), seed=str(protocol.seed))

    def as_json(self) -> dict:
        """The request as JSON-able data (a DDP job's file; `from_json` reads it back equal)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Request":
        fields = dict(data, protocols=tuple(Protocol(**p) for p in data["protocols"]),
                      settings=Settings(**data["settings"]), given=tuple(tuple(pair) for pair in data["given"]))
        return cls(**{**fields, **{key: tuple(fields[key]) for key in ("parts", "parent_only")}})

    def in_study(self, study: str) -> "Request":
        return replace(self, study=study)

    def in_experiment(self, experiment_id: str) -> "Request":
        return replace(self, experiment_id=experiment_id)
