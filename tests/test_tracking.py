"""MLflow: the driver creates the store; one parent run per invocation, one child run per job result."""

import pytest

from bench.config import load_config
from bench.suite import run_suite

pytestmark = [pytest.mark.java, pytest.mark.slow]


def test_parent_run_per_invocation_and_a_child_per_job_result(write_config, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    path = write_config(f"""
        executor: {{kind: local}}
        tracking: {{kind: mlflow, uri: "{uri}", experiment: "test/{{suite}}"}}
        suites:
          mini:
            tasks: [shapes]
            models: [constant, nearest-neighbour]
        """)
    cfg = load_config(path)
    run_suite(cfg, "mini", echo=lambda _: None)
    from bench.cli import main

    assert main(["run", "--suite", "mini", "--config", str(path)]) == 0  # second: jobs skipped, runs found
    printed = capsys.readouterr().out  # ends with the links that open the comparison (bench/mlflow_view.py)
    assert "MLflow: run `bench ui`, then open" in printed and "viewStateShareKey=bench-compare" in printed

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("test/mini")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("bench.kind") == "suite"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 2 and len(children) == 2
    assert len({p.info.run_name for p in parents}) == 2 or parents[0].info.start_time != parents[1].info.start_time
    first = min(parents, key=lambda p: p.info.start_time)
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {first.info.run_id}
    assert sorted(c.data.tags["bench.label"] for c in children) == ["constant", "nearest-neighbour"]
    for parent in parents:
        assert parent.info.status == "FINISHED"
        assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"summary.csv", "summary.md"}
    child = children[0]
    assert "CIDEr" in child.data.metrics and child.data.params["model"] in ("constant", "nearest-neighbour")
    assert len(child.data.params["key"]) == 12
    assert {a.path for a in client.list_artifacts(child.info.run_id)} >= {"captions.json", "scores.json"}
    assert sorted(c.data.tags["bench.cached"] for c in children) == ["false", "false"]
    for child in children:  # the job's splits as dataset inputs: the Dataset column of the UI
        assert child.data.tags["bench.kind"] == "job"
        assert {(i.dataset.name, i.tags[0].value) for i in child.inputs.dataset_inputs} == {
            ("shapes/train", "training"), ("shapes/test", "evaluation")}
