"""The public MLflow names: part names, series keys, tag keys, run names and study tags. Users query these names,
so they are defined here once; this module imports nothing and every floor of the package may use it."""
from __future__ import annotations

SCHEMA_VERSION = "1"  # the `gradacc.schema` tag: the version of the names below
DEFAULT_EXPERIMENT_ID = "0"  # MLflow's default experiment, 'Default': where `mlflow run` puts runs unless told
DEFAULT_VARIANT = "protocol"  # the `gradacc.variant` of a run that follows the protocol

PARTS = ("micro", "update", "converge")  # the measuring parts, in the order a study runs them
DEFAULT_PARTS = ("micro", "converge")  # a study's default: converge runs also give Part 2's figures
DDP, SWEEP, COMPARE, COMMMODEL, VERIFY = "ddp", "sweep", "compare", "commmodel", "verify"
CRITICAL = "critical"  # updates and images to a loss target per K: the critical batch size
ALLREDUCE = "allreduce"  # the all-reduce benchmark (nccl-tests style): the link that Part 4's model uses

# The per-step series each part logs (metric histories; `series/<key>.csv` artifacts): what load_series fetches.
# tests/integration/test_parts.py and tests/e2e/test_ddp.py check that the parts write no other.
SERIES = {"micro": ("micro_iter_ms", "opt_step_ms"), "update": ("update_time_s",),
          "converge": ("train_loss", "train_loss_update", "test_accuracy_epoch", "update_time_s",
                       "noise_scale_simple", "noise_scale_simple_epoch", "grad_norm_sq_est",
                       "grad_trace_sigma_est", "noise_snapshot_s",
                       "epoch", "images_seen", "lr"),  # per update: the UI's charts put every K on one axis
          "ddp": ("train_loss", "train_loss_update", "test_accuracy_epoch", "update_time_s", "compute_ms",
                  "allreduce_ms", "opt_step_ms", "rank_compute_ms", "rank_allreduce_ms",  # rank_*: step = u*N + rank
                  "collective_ms", "epoch", "images_seen", "lr"),
          "allreduce": ("allreduce_size_us", "algbw_size_gb_s", "busbw_size_gb_s")}  # step = message bytes
SERIES[CRITICAL] = SERIES["converge"] + ("target_loss",)  # a converge run cut at the target, + its measure

# Tag keys
PART = "gradacc.part"
SMOKE = "gradacc.smoke"
STUDY = "gradacc.study"  # the latest study; a run belongs to every study whose `gradacc.study.<id>` is "1"
CONFIG = "gradacc.config"
VARIANT = "gradacc.variant"
NOISE_SCALE = "gradacc.noise_scale"  # measured | off | unavailable: why
FAILURE = "gradacc.failure"
HOST, PID = "gradacc.host", "gradacc.pid"  # who writes the run: a RUNNING run whose process is gone is an orphan
BACKEND = "gradacc.backend"
RANK = "gradacc.rank"  # a sweep spread over several processes (torchrun): the rank that made the run
WORLD_SIZE = "gradacc.world_size"  # ... and how many processes the sweep was spread over
TOGETHER = "gradacc.seeds_together"  # a converge run trained together with other seeds ('43, 44, 45'): no timings
SCHEMA = "gradacc.schema"
NOTE = "mlflow.note.content"  # MLflow's run description, shown on the run's page and in the runs table

# MLflow 3's UI opens an experiment on its GenAI overview unless this tag says what kind it is (value checked
# against MLflow 3.17's UI bundle): gradacc sets it on the experiments it writes to, where nothing set it before.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")

COMPARE_OUTPUT = "compare-output"  # default folders of the comparison and of the Part 4 model
COMMMODEL_OUTPUT = "commmodel-output"

# Dataset inputs (`mlflow.data`): the input tag `mlflow.data.context` says what a run did with the subset
TRAINING, EVALUATION = "training", "evaluation"

NOISE_UNAVAILABLE_K1 = "unavailable: K=1 has one gradient per update, and the estimator needs at least two"


def part_tags(part: str, smoke: bool) -> dict[str, str]:
    """The two tags every run carries: what it is, and whether it ran the smoke protocol."""
    return {PART: part, SMOKE: str(smoke).lower()}


STUDY_ID_PATTERN = r"[\w.:-]+"  # a study id: it becomes part of a tag key, `gradacc.study.<id>`
STUDY_ID_RULE = "use letters, digits and . _ - : only"


def study_tags(study: str) -> dict[str, str]:
    """A run belongs to every study whose `gradacc.study.<id>` tag it carries; `gradacc.study` is the latest."""
    return {STUDY: study, f"{STUDY}.{study}": "1"}


def run_name(part: str, k: int, smoke: bool) -> str:
    """'converge-k4', 'micro-k1-smoke': the run's name in the UI."""
    return f"{part}-k{k}" + ("-smoke" if smoke else "")


def dataset_name(context: str, images: int) -> str:
    """'cifar10-train-10240', 'cifar10-test-2048': a dataset input's name in the UI (its digest tells the data)."""
    return f"cifar10-{'train' if context == TRAINING else 'test'}-{images}"


def workers_run_name(part: str, workers: int, smoke: bool) -> str:
    """'ddp-w2', 'verify-w4-smoke': a run of N DDP workers."""
    return f"{part}-w{workers}" + ("-smoke" if smoke else "")


def failed_run_name(command: str, k: str | None) -> str:
    """'converge-k4-failed': an `mlflow run` run whose command stopped before it could measure."""
    return f"{command}" + (f"-k{k}" if k else "") + "-failed"
