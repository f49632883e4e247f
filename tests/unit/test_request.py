"""The request a command builds once from its options (gradacc/cli/request.py): the protocols in the sweep's order,
the settings with "auto" resolved, the params as given (the strings `mlflow run` logs), the study."""
from __future__ import annotations

import click
import pytest

from gradacc.cli.measure import converge, sweep
from gradacc.cli.request import build_request
from gradacc.core.config import Protocol
from gradacc.core.request import Request, Settings
from gradacc.study.sweep import SWEEP_ONLY


def options_of(command: click.Command, args: list[str]) -> dict:
    return command.make_context(command.name, args).params


def test_a_converge_request_logs_every_option_as_given_and_resolves_auto():
    options = options_of(converge, ["--k", "4", "--threads", "auto", "--data-dir", "", "--eval-every-epoch"])
    request = build_request(options, [options["k"]])
    assert request.protocols == (Protocol(k=4, eval_every_epoch=True),)
    assert request.settings == Settings("auto", None, "on", "auto")
    assert request.experiment is None and request.experiment_id is None and request.study is None
    # what given_params wrote before the request: every option but the experiment, as strings
    assert request.child_params(request.protocol) == {
        "k": "4", "epochs": "5", "seed": "42", "device": "auto", "loader": "device", "threads": "auto",
        "data_dir": "auto", "cuda_graphs": "false", "tf32": "on", "smoke": "false", "system_metrics": "false",
        "lr_scaling": "none", "warmup_epochs": "0", "train_size": "10240", "noise_scale": "auto",
        "eval_every_epoch": "true", "log_model": "false"}


def test_a_sweep_request_orders_seeds_then_k_and_keeps_the_parent_s_options_from_its_children():
    options = options_of(sweep, ["--ks", "1,8", "--repeats", "2", "--seed", "7", "--threads", "2",
                                 "--study", "new", "--experiment", "mine", "--smoke"])
    request = build_request(options, options["ks"], ["micro", "converge"], SWEEP_ONLY)
    assert [(p.k, p.seed, p.smoke) for p in request.protocols] == [(1, 7, True), (8, 7, True), (1, 8, True),
                                                                   (8, 8, True)]
    assert request.settings.threads == 2 and request.study is None and request.experiment == "mine"
    assert request.parts == ("micro", "converge") and request.smoke
    parent = request.given_params()
    assert parent["ks"] == "1,8" and parent["repeats"] == "2" and parent["study"] == "new"
    assert "experiment" not in parent and "gpus" not in parent  # where the runs go, and the processes: no params
    child = request.child_params(request.protocols[3])
    assert child["k"] == "8" and child["seed"] == "8" and not set(SWEEP_ONLY) & set(child)


def test_a_named_study_is_kept_and_the_last_repeat_s_seed_must_fit_torch():
    options = options_of(sweep, ["--study", "s1"])
    assert build_request(options, options["ks"]).study == "s1"
    options = options_of(sweep, ["--seed", str(2**64 - 1), "--repeats", "2"])
    with pytest.raises(click.BadParameter, match="the last seed would be 18446744073709551616"):
        build_request(options, options["ks"])


def test_settings_resolve_auto_once():
    assert Settings.of("cpu", "auto", "off", None) == Settings("cpu", None, "off", "auto")
    assert Settings.of(threads="3").threads == 3
    assert Settings.of().worker_threads == 1 and Settings.of(threads=2).worker_threads == 2


def test_the_request_is_frozen_and_named_copies_change_one_field():
    request = Request((Protocol(),))
    with pytest.raises(AttributeError):
        request.study = "x"
    assert request.in_study("s").study == "s" and request.in_experiment("3").experiment_id == "3"
    assert request.study is None and request.experiment_id is None


def test_a_ddp_job_carries_the_request_whole_through_json():
    import json
    request = Request((Protocol(k=2, smoke=True),), Settings.of("cpu", 2), (("k", "2"),), "e", "3", "s", True,
                      ("micro",), ("ks",), True)
    assert Request.from_json(json.loads(json.dumps(request.as_json()))) == request
