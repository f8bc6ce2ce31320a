"""logger=[tensorboard,wandb,mlflow]: every tracker gets the scalars, the hyperparameters with the best
validation perplexity and the text samples (read back from W&B's offline run file and a local MLflow
store); `make report`'s curves come from validations.jsonl, whatever loggers are on."""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import run_train_script, tiny_overrides, write_corpus
from rnnlm.errors import UserError
from rnnlm.report.curves import read_history, val_curve
from rnnlm.training.trackers import build_loggers


def wandb_records(path: Path) -> list:
    """The protobuf records of a W&B run file (a LevelDB-style log: 7-byte header, 32 KiB blocks,
    each record a 7-byte header of checksum, length and kind, then its bytes)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, out, part = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        part += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(part)
            out.append(record)
            part = b""
        elif kind == 0:
            part = b""
    return out


def _updates(records: list, kind: str) -> dict[str, object]:
    found: dict[str, object] = {}
    for r in records:
        if r.WhichOneof("record_type") == kind:
            for item in getattr(r, kind).update:
                found[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return found


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("trackers")
    corpus = write_corpus(root / "corpus")
    run, outputs = root / "run", root / "outputs"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLFLOW_"))}
    env.update(HOME=str(root), RNNLM_OUTPUT_DIR=str(outputs))  # no W&B key: offline
    out = run_train_script(
        [
            *tiny_overrides(corpus),
            "logger=[tensorboard,wandb,mlflow]",
            "callbacks.text_sample.max_new_tokens=8",
            f"hydra.run.dir={run}",
        ],
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((run / "result.json").read_text())
    return {"run": run, "outputs": outputs, "result": result, "console": out.stdout + out.stderr}


def test_the_console_shows_no_noise(tracked: dict) -> None:
    """No litlogger advertisement, no progress-bar v_num, FLOPs counted (per token, batch 1)."""
    console = tracked["console"]
    assert "litlogger" not in console and "v_num" not in console
    assert "Total FLOPs:" in console and "Total FLOPs: 0 " not in console


def test_wandb_offline_run_has_hparams_best_metric_and_samples(tracked: dict) -> None:
    (run_file,) = (tracked["run"] / "wandb").glob("offline-run-*/run-*.wandb")
    records = wandb_records(run_file)
    summary, config = _updates(records, "summary"), _updates(records, "config")
    assert summary["val/best_ppl"] == pytest.approx(tracked["result"]["best_val_ppl"], rel=1e-6)
    assert summary["test/ppl"] == pytest.approx(tracked["result"]["test_ppl"], rel=1e-6)
    assert "train/loss" in summary  # the scalars
    assert config["model/cell"] == "gru" and "optim/lr" in config
    (table,) = run_file.parent.glob("files/media/table/samples_*.table.json")
    rows = json.loads(table.read_text())["data"]
    assert rows and isinstance(rows[0][1], str) and rows[0][1]


def test_mlflow_local_store_has_the_same(tracked: dict) -> None:
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=f"file:{tracked['outputs'] / 'mlruns'}")
    experiment = client.get_experiment_by_name("rnnlm")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.metrics["val/best_ppl"] == pytest.approx(tracked["result"]["best_val_ppl"])
    assert run.data.metrics["test/ppl"] == pytest.approx(tracked["result"]["test_ppl"])
    assert run.data.params["model/cell"] == "gru"
    assert run.info.run_name == tracked["result"]["run_name"]
    assert run.info.status == "FINISHED"
    samples = client.list_artifacts(run.info.run_id, "samples")
    assert samples and samples[0].path.endswith(".txt")


def test_report_curves_come_from_validations_jsonl(tracked: dict, tmp_path: Path) -> None:
    run = tracked["run"]
    history = read_history(run)
    assert history and all(p.tokens > 0 and p.ppl > 1 for p in history)
    assert [p.ppl for p in val_curve(run)] == [p.ppl for p in history]
    # without TensorBoard the report still has its curve
    job = tmp_path / "job"
    job.mkdir()
    (job / "validations.jsonl").write_text((run / "validations.jsonl").read_text() + '{"cut')
    assert [p.ppl for p in val_curve(job)] == [p.ppl for p in history]


def test_a_missing_tracker_package_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    group = OmegaConf.create({"wandb": {"_target_": "lightning.pytorch.loggers.WandbLogger"}})
    with pytest.raises(UserError, match=r"pip install 'rnnlm\[trackers\]'"):
        build_loggers(group, "run")
