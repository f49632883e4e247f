"""Runs saved on local disk when the tracking store stops answering, so that nothing measured is lost.

A saved run is a folder `<root>/<run id>/` holding `run.json` (what the store was to receive: params, tags,
metric points, dataset inputs, the final status) and `artifacts/` (the files, as they would be logged).
`gradacc upload` writes it into the run later (tracking.upload_saved_run). This module knows the format only,
not MLflow. A saved run is private to its owner (folders 0700, files 0600): its files may be unpublished results,
and its URI is saved with any password replaced by *** (tracking/redact.py)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT_ENV = "GRADACC_UNSENT_DIR"
DEFAULT_ROOT = "gradacc-unsent"
RUN_FILE = "run.json"
ARTIFACTS = "artifacts"
UPLOADED = ".uploaded"
FOLDER_MODE, FILE_MODE = 0o700, 0o600


def private_folder(path: Path) -> None:
    """`path` and its missing parents made 0700 (an existing folder of the user's keeps its mode)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    for made in missing:
        os.chmod(made, FOLDER_MODE)  # mkdir's mode is narrowed by the umask only; parents= ignores it


def make_private(root: Path) -> None:
    """`root` and everything under it (copied in with the source's modes) made 0700 / 0600."""
    os.chmod(root, FOLDER_MODE)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(folder, name), FOLDER_MODE)
        for name in files:
            os.chmod(os.path.join(folder, name), FILE_MODE)


def saved_root() -> Path:
    """Where saved runs go: $GRADACC_UNSENT_DIR, else ./gradacc-unsent."""
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT).resolve()


@dataclass
class SavedRun:
    """What could not be written to run `run_id` of the store `tracking_uri`; kept on disk after every change."""

    folder: Path
    run_id: str
    experiment_id: str
    tracking_uri: str
    reason: str
    params_given: dict[str, str] = field(default_factory=dict)
    params_resolved: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: list[list] = field(default_factory=list)  # [key, value, timestamp ms, step]
    inputs: list[dict] = field(default_factory=list)  # dataset inputs, as tracking/datasets.py records them
    status: str | None = None  # FINISHED, FAILED or KILLED once the run has ended
    end_time: int | None = None

    @classmethod
    def create(cls, run_id: str, experiment_id: str, tracking_uri: str, reason: str,
               root: Path | None = None) -> "SavedRun":
        folder = (root or saved_root()) / run_id
        private_folder(folder / ARTIFACTS)
        saved = cls(folder, run_id, experiment_id, tracking_uri, reason)
        saved.save()
        return saved

    @classmethod
    def load(cls, folder: Path) -> "SavedRun":
        data = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
        return cls(folder=folder, **data)

    def save(self) -> None:
        """Written to a temporary file and renamed, so an interrupt never leaves half a run.json."""
        data = asdict(self)
        del data["folder"]
        tmp = self.folder / (RUN_FILE + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # one an interrupt left behind: os.open's mode applies to a new file only
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=1))
        os.replace(tmp, self.folder / RUN_FILE)

    def add_params(self, given: dict[str, str], resolved: dict[str, str]) -> None:
        self.params_given.update({k: str(v) for k, v in given.items()})
        self.params_resolved.update({k: str(v) for k, v in resolved.items()})
        self.save()

    def add_tags(self, tags: dict[str, str]) -> None:
        self.tags.update({k: str(v) for k, v in tags.items()})
        self.save()

    def add_metrics(self, points: list[tuple[str, float, int, int]]) -> None:
        self.metrics.extend([key, float(value), int(ts), int(step)] for key, value, ts, step in points)
        self.save()

    def add_inputs(self, records: list[dict]) -> None:
        self.inputs.extend(records)
        self.save()

    def add_artifacts(self, source: Path) -> None:
        shutil.copytree(source, self.folder / ARTIFACTS, dirs_exist_ok=True)
        make_private(self.folder / ARTIFACTS)

    def end(self, status: str) -> None:
        self.status, self.end_time = status, int(time.time() * 1000)
        self.save()

    @property
    def artifacts(self) -> Path:
        return self.folder / ARTIFACTS


def find_saved_runs(path: Path) -> list[Path]:
    """The saved-run folders at `path`: the folder itself if it holds run.json, else its subfolders that do."""
    if (path / RUN_FILE).is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if (p / RUN_FILE).is_file() and not p.name.endswith(UPLOADED))


def mark_uploaded(folder: Path) -> Path:
    """Renamed, not deleted: the user can check the store and remove it; upload skips `*.uploaded`."""
    target = folder.with_name(folder.name + UPLOADED)
    if target.exists():
        shutil.rmtree(target)
    folder.rename(target)
    return target
