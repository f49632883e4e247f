"""A command's Request (gradacc/core/request.py), built once from its options as click parsed them (the command line,
or `mlflow run`'s parameters passed through it): the protocols, the settings, the options as given, the study."""
from __future__ import annotations

import dataclasses

import click

from gradacc.cli.options import MAX_SEED
from gradacc.core.config import Protocol, build_protocol
from gradacc.core.request import Request, Settings

# The options that are a Protocol's own fields (k, seed and smoke are built apart)
PROTOCOL_OPTIONS = tuple(f.name for f in dataclasses.fields(Protocol) if f.name not in ("k", "seed", "smoke"))
# Options that are no run's param: where the runs go (the experiment is the run's own), how many processes share
# the study (each rank's runs carry gradacc.rank and gradacc.world_size instead)
NOT_PARAMS = ("experiment", "gpus")


def as_given(value) -> str:
    """An option's value as `mlflow run` would log it: booleans lower-case, lists comma-separated."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return str(value)


def seeds_of(options: dict) -> range:
    """--seed, --seed+1, ... for --repeats (1 without it); the last must fit torch.manual_seed too."""
    seed, repeats = options["seed"], options.get("repeats", 1)
    if seed + repeats - 1 > MAX_SEED:
        raise click.BadParameter(f"with --repeats {repeats} the last seed would be {seed + repeats - 1}, above "
                                 f"torch.manual_seed's largest, {MAX_SEED}", param_hint="--seed")
    return range(seed, seed + repeats)


def build_request(options: dict, ks, parts=(), parent_only=()) -> Request:
    """The request of a command's `options` (click's params) for the accumulation factors `ks`: a protocol per seed,
    then per K, in that order (the sweep's); `parent_only`: the options that describe a study's parent run alone."""
    fields = {key: options[key] for key in PROTOCOL_OPTIONS if key in options}
    protocols = tuple(build_protocol(k, seed, options.get("smoke", False), **fields)
                      for seed in seeds_of(options) for k in ks)
    given = {key: as_given(value) for key, value in options.items() if key not in NOT_PARAMS}
    settings = Settings.of(options.get("device", "auto"), options.get("threads", "auto"), options.get("tf32", "on"),
                           options.get("data_dir"))
    if "data_dir" in given:
        given["data_dir"] = settings.data_dir
    study = options.get("study")
    return Request(protocols, settings, tuple(given.items()), experiment=options.get("experiment"),
                   study=None if study in (None, "", "new") else study, force=bool(options.get("force")),
                   parts=tuple(parts), parent_only=tuple(parent_only), log_model=bool(options.get("log_model")))

