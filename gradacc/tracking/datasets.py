"""The data subsets a run used, as MLflow dataset inputs (`mlflow.data`): the UI's Dataset column, its filter, and
a digest of the exact images and labels, so that two runs' subsets can be seen to be the same.

A dataset input is kept as a plain record, `DatasetInput.to_dictionary()`'s shape ({"dataset": {name, digest,
source_type, source, schema, profile}, "tags": {"mlflow.data.context": ...}}), so that a run saved on disk
(tracking/offline.py) keeps it as JSON and `gradacc upload` logs it unchanged. The entity is built directly from
the digest core/data.py computed: no pandas frame or array copy of 10,240 images."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from mlflow.data.schema import TensorDatasetSchema
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.tracking import MlflowClient
from mlflow.types import Schema, TensorSpec
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from gradacc.names import TRAINING, dataset_name

SOURCE_TYPE = "local"  # what mlflow.data gives a local path (LocalArtifactDatasetSource): the UI shows its uri


def tensor_schema(image_shape: tuple[int, ...]) -> str:
    """The schema `mlflow.data.from_numpy` would infer for uint8 images and int64 labels, as the UI reads it."""
    schema = TensorDatasetSchema(features=Schema([TensorSpec(np.dtype("uint8"), (-1, *image_shape))]),
                                 targets=Schema([TensorSpec(np.dtype("int64"), (-1,))]))
    return json.dumps(schema.to_dict())


def subset_record(context: str, digest: str, source: Path, images: int, class_counts: list[int],
                  image_shape: tuple[int, ...], files: str) -> dict:
    """One dataset input: `context` is training or evaluation, `digest` core.data.subset_digest's, `source` the
    folder the batches were read from, `files` which batches the first `images` images come from."""
    profile = {"images": images, "subset": f"the first {images} images of {files}, in order",
               "image_shape": list(image_shape), "image_dtype": "uint8", "label_dtype": "int64",
               "class_counts": {str(label): n for label, n in enumerate(class_counts)}}
    dataset = Dataset(name=dataset_name(context, images), digest=digest, source_type=SOURCE_TYPE,
                      source=json.dumps({"uri": str(source)}), schema=tensor_schema(image_shape),
                      profile=json.dumps(profile))
    return {"dataset": dataset.to_dictionary(), "tags": {MLFLOW_DATASET_CONTEXT: context}}


def dataset_input(record: dict) -> DatasetInput:
    return DatasetInput(Dataset(**record["dataset"]),
                        tags=[InputTag(key, value) for key, value in record["tags"].items()])


def record_key(name: str, digest: str, tags: dict[str, str]) -> tuple[str, str, str]:
    """What tells two inputs of a run apart: MLflow keeps one dataset per (name, digest), one input per run."""
    return name, digest, tags.get(MLFLOW_DATASET_CONTEXT, TRAINING)


def inputs_not_in(run, records: list[dict]) -> list[dict]:
    """The records that run (an mlflow Run) does not carry yet, so that uploading twice logs nothing twice."""
    there = {record_key(i.dataset.name, i.dataset.digest, {t.key: t.value for t in i.tags})
             for i in (run.inputs.dataset_inputs if run.inputs else [])}
    return [r for r in records if record_key(r["dataset"]["name"], r["dataset"]["digest"], r["tags"]) not in there]


def log_dataset_inputs(client: MlflowClient, run_id: str, records: list[dict]) -> None:
    """One call for all of a run's inputs (about as costly as one log_batch)."""
    if records:
        client.log_inputs(run_id, datasets=[dataset_input(r) for r in records])
