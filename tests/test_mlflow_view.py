"""The MLflow view of a suite (bench/mlflow_view.py): links, shared view state, datasets, the parent run's answer,
and `bench ui`'s one-line errors for bad input."""

import json

import pytest

from bench.cli import main
from bench.mlflow_view import (
    DEFAULT_UI,
    VIEW_KEY,
    VIEW_TAG,
    column_key,
    one_line_answer,
    read_table,
    run_end_links,
    run_link,
    runs_link,
    ui_base,
    view_state,
)
from tests.ui_store import ANSWER, CIDER, MAIN_CSV, VERDICT_CSV, build_store


def test_the_link_names_the_machine_learning_view_and_the_shared_state_only():
    link = runs_link("http://127.0.0.1:5000", "7")
    assert link == ("http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"
                    f"&viewStateShareKey={VIEW_KEY}")
    assert ui_base("http://mlflow.example:8080/") == "http://mlflow.example:8080"
    assert ui_base("sqlite:////x/mlflow.db") == "http://127.0.0.1:5000"


def test_view_state_shows_the_comparison_columns_grouped_by_model_sorted_by_cider():
    state = view_state()
    assert state["orderByKey"] == "metrics.`CIDEr`" and state["orderByAsc"] is False
    assert {column_key("params", "seed"), column_key("metrics", "CIDEr"), column_key("metrics", "BLEU-4"),
            column_key("metrics", "latency_median_s"), column_key("params", "label")} <= set(state["selectedColumns"])
    assert state["groupBy"]["aggregateFunction"] == "average"
    assert {"mode": "param", "groupByData": "label"} in state["groupBy"]["groupByKeys"]
    assert state["searchFilter"] == "tags.`bench.kind` = 'job'"


def test_one_line_answer_of_a_hand_made_verdict(tmp_path):
    path = tmp_path / "shapes-verdict.csv"
    path.write_text(VERDICT_CSV)
    table = read_table(path)
    assert table["axis"][1] == "CIDEr" and len(table["axis"]) == 3  # the provenance comment is not a row
    assert one_line_answer("shapes", table) == ANSWER
    main_table = tmp_path / "shapes-main.csv"
    main_table.write_text(MAIN_CSV)
    assert read_table(main_table)["model"] == ["constant", "nearest-neighbour"]


@pytest.mark.java
def test_the_store_holds_datasets_tables_figures_and_the_answer(write_config, tmp_path, tiny_shapes):
    import hashlib

    from mlflow.tracking import MlflowClient

    from bench.config import load_config

    cfg = load_config(build_store(write_config, tmp_path))
    client = MlflowClient(cfg.tracking.uri)
    experiment = client.get_experiment_by_name("diffcap-bench/ui")
    assert json.loads(experiment.tags[VIEW_TAG]) == view_state()
    runs = client.search_runs([experiment.experiment_id])
    jobs = [r for r in runs if r.data.tags.get("bench.kind") == "job"]
    parent = next(r for r in runs if r.data.tags.get("bench.kind") == "suite")
    assert sorted((r.data.params["label"], int(r.data.params["seed"])) for r in jobs) == sorted(CIDER)
    for run in jobs:
        inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
        assert set(inputs) == {"shapes/train", "shapes/test"}  # every captioner is prepared on the train split
        for split, images, context in (("train", 40, "training"), ("test", 12, "evaluation")):
            used = inputs[f"shapes/{split}"]
            assert json.loads(used.dataset.profile) == {"num_images": images, "split": split}
            assert [(t.key, t.value) for t in used.tags] == [("mlflow.data.context", context)]
        assert inputs["shapes/train"].dataset.digest == inputs["shapes/test"].dataset.digest  # one split file
        assert inputs["shapes/test"].dataset.digest == hashlib.sha256(tiny_shapes.split_file.read_bytes()).hexdigest()[:16]
    assert parent.data.tags["mlflow.note.content"] == ANSWER
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "tables")}
    assert artifacts == {"tables/shapes-verdict.json", "tables/shapes-main.json"}
    verdict = json.loads(open(client.download_artifacts(parent.info.run_id, "tables/shapes-verdict.json")).read())
    assert verdict["columns"][-1] == "verdict" and verdict["data"][1][-1] == "diffusion ahead"
    assert "images" in {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_bench_ui_refuses_a_missing_store_an_empty_one_and_an_unknown_suite(write_config, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    config = write_config(f"""
        tracking: {{kind: mlflow, uri: "{uri}"}}
        suites:
          s: {{tasks: [shapes], models: [constant]}}
        """)
    port = ["--port", "5999", "--config", str(config)]
    assert main(["ui", *port]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no MLflow store there" in err

    from mlflow.tracking import MlflowClient

    MlflowClient(uri).create_experiment("diffcap-bench/s")  # a store with the experiment but no runs
    assert main(["ui", *port]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds no job runs of suite(s) s" in err
    assert main(["ui", *port, "--suite", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--suite 'nope'" in err and "suites are: s" in err


@pytest.mark.java
def test_bench_run_ends_with_the_links_and_old_job_runs_join_the_view(write_config, tmp_path):
    from mlflow.tracking import MlflowClient

    from bench.config import load_config

    cfg = load_config(build_store(write_config, tmp_path))
    client = MlflowClient(cfg.tracking.uri)
    experiment = client.get_experiment_by_name("diffcap-bench/ui")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.data.tags["bench.kind"] == "suite")
    old_job = next(r for r in runs if r.data.tags["bench.kind"] == "job")
    client.delete_tag(old_job.info.run_id, "bench.kind")  # as a store written before job runs carried it
    lines = run_end_links(cfg.tracking.uri, "diffcap-bench/ui")
    assert lines == ["MLflow: run `bench ui`, then open",
                     f"  diffcap-bench/ui: job runs by model  {runs_link(DEFAULT_UI, experiment.experiment_id)}",
                     f"  diffcap-bench/ui: latest verdict  "
                     f"{run_link(DEFAULT_UI, experiment.experiment_id, parent.info.run_id)}",
                     f"  diffcap-bench/ui: verdict table  {DEFAULT_UI}/#/experiments/{experiment.experiment_id}/runs/"
                     f"{parent.info.run_id}/artifacts/tables/shapes-verdict.json?workflowType=machine_learning"]
    assert client.get_run(old_job.info.run_id).data.tags["bench.kind"] == "job"
    assert run_end_links(cfg.tracking.uri, "diffcap-bench/other") == []
