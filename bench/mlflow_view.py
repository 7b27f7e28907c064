"""What the MLflow UI opens on: a suite's job runs compared, and the suite's answer on its parent run.

MLflow 3.17's UI opens an experiment in its GenAI view (traces) unless the URL says
`workflowType=machine_learning`; the runs table's columns, grouping, sort and filter come from the
browser's local storage unless the URL names a shared view state (`viewStateShareKey=K`), which the UI
reads from the experiment tag `mlflow.sharedViewState.K` as JSON. The tracker writes that tag on every
suite experiment, and `bench ui` / `bench run` print links that name it, so the link opens on the
comparison with no clicks: job runs only, grouped by model label and task (seeds averaged in the group
row), label, seed, CIDEr, BLEU-4 and batch-1 latency as columns, sorted by CIDEr.

The parent run of each invocation gets the report's verdict and main tables (`log_table`), its figures
(`log_image`) and the verdict's one-line answer as its description.
Only the driver calls this module; mlflow is imported inside the functions that need it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

#: the share key of the view (URL parameter viewStateShareKey) and the experiment tag that holds it.
VIEW_KEY = "bench-compare"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
#: the runs table's columns: (MLflow column type, key); `latency_median_s` is the batch-1 latency.
COLUMNS = (("attributes", "Dataset"), ("params", "label"), ("params", "model"), ("params", "seed"),
           ("metrics", "CIDEr"), ("metrics", "BLEU-4"), ("metrics", "latency_median_s"))
#: the job runs' tag that tells them from the invocations' parent runs (bench.kind = suite).
JOB_KIND = "job"
DEFAULT_UI = "http://127.0.0.1:5000"


def column_key(kind: str, name: str) -> str:
    """A runs-table column as the MLflow UI names it (`metrics.`CIDEr``)."""
    return f"{kind}.`{name}`"


def view_state() -> dict[str, Any]:
    """The shared view state: search facets (filter, sort) and UI state (columns, grouping) of the runs table."""
    return {
        "searchFilter": f"tags.`bench.kind` = '{JOB_KIND}'",
        "orderByKey": column_key("metrics", "CIDEr"),
        "orderByAsc": False,
        "lifecycleFilter": "Active",
        "selectedColumns": [column_key(kind, name) for kind, name in COLUMNS],
        "groupBy": {"aggregateFunction": "average",
                    "groupByKeys": [{"mode": "param", "groupByData": "label"},
                                    {"mode": "tag", "groupByData": "bench.task"}]},
        "groupsExpanded": {},
        "runListHidden": False,
        "viewMaximized": False,
        "useGroupedValuesInCharts": True,
    }


def install_view(client, experiment_id: str) -> None:
    """Write (or refresh) the shared view state tag on the experiment."""
    value = json.dumps(view_state(), sort_keys=True)
    experiment = client.get_experiment(experiment_id)
    if experiment.tags.get(VIEW_TAG) != value:
        client.set_experiment_tag(experiment_id, VIEW_TAG, value)


def ui_base(uri: str, default: str = DEFAULT_UI) -> str:
    """Where the UI of a store is served: the server itself for an HTTP store, else `default` (bench ui)."""
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else default.rstrip("/")


def runs_link(base: str, experiment_id: str) -> str:
    """The link that opens the experiment's job runs in the Model training view, in the comparison view.

    No search-facet parameter may be added: the UI ignores a shared view state when the URL has one.
    """
    query = urlencode({"workflowType": "machine_learning", "viewStateShareKey": VIEW_KEY})
    return f"{base}/#/experiments/{experiment_id}/runs?{query}"


def run_link(base: str, experiment_id: str, run_id: str, artifact: str | None = None) -> str:
    """The link to one run's page (the parent run: its description), or to one of its artifacts (a table)."""
    page = f"/artifacts/{artifact}" if artifact else ""
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}{page}?workflowType=machine_learning"


# ---------------------------------------------------------------- job runs: datasets

_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """sha256 of a file, first 16 hex digits; cached by (path, size, mtime) within the process."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()[:16]
    return _DIGESTS[key]


def split_datasets(task_name: str, task: Any, splits: dict[str, str]) -> list:
    """One MLflow DatasetInput per (split, context) of `splits` ({split: "training" | "evaluation"}).

    The dataset is named `<task>/<split>`; its digest is the split file's, its profile the number of
    images the split lists (after the task's `max_images` cap). A task without a split file (a plugin
    task that builds its samples in memory) gets none: no dataset is better than a made-up digest.
    """
    from mlflow.entities import Dataset, DatasetInput, InputTag

    split_file = getattr(task, "split_file", None)
    if split_file is None:
        return []
    if hasattr(task, "ensure_files"):
        task.ensure_files()
    split_file = Path(split_file)
    digest = file_digest(split_file)
    out = []
    for split, context in splits.items():
        listed = task.listed(split) if hasattr(task, "listed") else task.samples(split)
        profile = json.dumps({"num_images": len(listed), "split": split})
        dataset = Dataset(name=f"{task_name}/{split}", digest=digest, source_type="local",
                          source=json.dumps({"uri": str(split_file)}), profile=profile)
        out.append(DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)]))
    return out


_TASKS: dict[str, Any] = {}


def job_datasets(job) -> list:
    """The datasets a job used: its training split (context training; every job prepares its captioner on
    it, trained or not: a vocabulary, a nearest-neighbour index), and its evaluation split (context
    evaluation) when it evaluates. None when the task's files are not on this machine."""
    from bench.errors import DatasetError
    from bench.registry import create_task

    splits = {"train": "training"}
    if "eval" in job.phases:
        splits[str(job.eval.get("split", "test"))] = "evaluation"
    key = json.dumps([job.task_class, job.task_options], sort_keys=True, default=str)
    try:
        if key not in _TASKS:
            _TASKS[key] = create_task(job.task_class, **job.task_options)
        return split_datasets(job.task, _TASKS[key], splits)
    except (DatasetError, OSError):  # the data lives on the workers only: the runs go without datasets
        return []


# ---------------------------------------------------------------- parent run: the answer

def read_table(path: Path) -> dict[str, list[Any]]:
    """A report CSV (trailing `# key: value` provenance lines skipped) as columns for `log_table`."""
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    if not rows:
        return {}
    header, body = rows[0], rows[1:]
    return {name: [row[i] if i < len(row) else "" for row in body] for i, name in enumerate(header)}


def one_line_answer(task: str, verdict: dict[str, list[Any]]) -> str:
    """The verdict in one line: the CIDEr axis (else the first tested axis) and latency at equal quality."""
    axes = verdict.get("axis", [])
    if not axes:
        return ""
    picked = [i for i, a in enumerate(axes) if a == "CIDEr"] or [0]
    picked += [i for i, a in enumerate(axes) if a.startswith("latency at")][:1]
    parts = []
    for i in dict.fromkeys(picked):
        cell = {k: v[i] for k, v in verdict.items()}
        diff = cell.get("A - B", "")
        # the latency row holds a ratio there ("x0.19"): say so rather than print it as a difference
        diff = f"A / B = {diff[1:]}" if diff.startswith("x") else f"A - B {diff}"
        detail = f"{cell.get('A', '')} vs {cell.get('B', '')}, {diff}"
        if cell.get("p (Holm)", "–") not in ("", "–"):
            interval = cell.get("interval (Holm-adjusted)", cell.get("95% interval", ""))
            detail += f" {interval}, p {cell['p (Holm)']}"
        parts.append(f"{cell['axis']}: {cell.get('verdict', '')} ({detail})")
    return f"{task}: " + "; ".join(parts)


def log_answer(client, run_id: str, report_dir: Path) -> None:
    """Mirror the suite's report onto its parent run: verdict and main tables, figures, the one-line answer."""
    if not report_dir.is_dir():
        return
    answers = []
    for kind in ("verdict", "main"):
        for path in sorted(report_dir.glob(f"*-{kind}.csv")):
            table = read_table(path)
            if not table:
                continue
            client.log_table(run_id, table, f"tables/{path.stem}.json")
            if kind == "verdict":
                answers.append(one_line_answer(path.stem.removesuffix("-verdict"), table))
    for path in sorted((report_dir / "figures").glob("*.png")):
        from PIL import Image

        with Image.open(path) as image:
            client.log_image(run_id, image.convert("RGB"), key=path.stem, step=0)
    answer = " | ".join(a for a in answers if a)
    if answer:
        client.set_tag(run_id, "mlflow.note.content", answer)


# ---------------------------------------------------------------- links: bench ui, the end of bench run

def mark_jobs(client, experiment_id: str) -> None:
    """Tag as jobs the job runs of a store written before job runs carried `bench.kind` (the view filters on it)."""
    for run in client.search_runs([experiment_id], filter_string="tags.`bench.key` LIKE '%'", max_results=5000):
        if "bench.kind" not in run.data.tags:
            client.set_tag(run.info.run_id, "bench.kind", JOB_KIND)


def suite_links(client, experiment_name: str, base: str) -> list[str]:
    """The lines that open a suite's experiment: its job runs compared, and the latest invocation's answer.
    Empty when the store has no job run of it."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    eid = experiment.experiment_id
    mark_jobs(client, eid)
    if not client.search_runs([eid], filter_string=f"tags.`bench.kind` = '{JOB_KIND}'", max_results=1):
        return []
    install_view(client, eid)
    lines = [f"{experiment_name}: job runs by model  {runs_link(base, eid)}"]
    parents = client.search_runs([eid], filter_string="tags.`bench.kind` = 'suite'",
                                 order_by=["attributes.start_time DESC"], max_results=1)
    if parents:
        run_id = parents[0].info.run_id
        lines.append(f"{experiment_name}: latest verdict  {run_link(base, eid, run_id)}")
        for table in client.list_artifacts(run_id, "tables"):
            if table.path.endswith("-verdict.json"):
                lines.append(f"{experiment_name}: verdict table  {run_link(base, eid, run_id, table.path)}")
    return lines


def ui_links(uri: str, experiment_template: str, suites: list[str], base: str, only: str | None = None) -> list[str]:
    """The links `bench ui` prints, one pair per suite of bench.yaml with job runs in the store.

    Raises ConfigError (one line) for an unknown suite, a missing SQLite store, or a store that holds no
    job run of the suites asked for: the UI would open on an empty page.
    """
    from bench.config import ConfigError

    if only is not None and only not in suites:
        raise ConfigError(f"--suite {only!r}: no such suite in the config; its suites are: {', '.join(suites)}")
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise ConfigError(f"tracking.uri {uri!r}: no MLflow store there; `bench run --suite S` creates it "
                          f"(or point tracking.uri / --set tracking.uri=... at an existing store)")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    asked = [only] if only is not None else suites
    lines = [line for suite in asked for line in suite_links(client, experiment_template.format(suite=suite), base)]
    if not lines:
        raise ConfigError(f"tracking.uri {uri!r}: the store holds no job runs of suite(s) {', '.join(asked)}; "
                          f"run `bench run --suite S` (or `bench track --suite S`) first")
    return lines


def run_end_links(uri: str, experiment_name: str) -> list[str]:
    """The lines `bench run` ends with: how to open the suite's comparison; empty if the store cannot say."""
    base = ui_base(uri)
    try:
        from mlflow.tracking import MlflowClient

        lines = suite_links(MlflowClient(uri), experiment_name, base)
    except Exception:  # noqa: BLE001 - tracking already warned if it failed; the results are on disk
        return []
    how = "open" if uri.startswith(("http://", "https://")) else "run `bench ui`, then open"
    return [f"MLflow: {how}"] + [f"  {line}" for line in lines] if lines else []
