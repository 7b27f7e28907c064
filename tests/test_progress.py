"""The driver's console: a live view of the jobs, a note once per run, worker lines in each job's log."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.config import load_config
from bench.progress import SuiteProgress
from bench.results import write_json
from bench.suite import run_suite
from tests.fakes import InstantExecutor

ROOT = Path(__file__).resolve().parents[1]
SUITE = """
executor: {kind: local}
tracking: {kind: none}
suites:
  mini: {tasks: [shapes], models: [constant, nearest-neighbour, vit-gpt2-tiny]}
"""
REASON = "SPICE needs stanford-corenlp-3.6.0.jar in /some/local/lib: download it"


class ScoringExecutor(InstantExecutor):
    """Each job also writes a scores.json saying SPICE is unavailable, as every real job would here."""

    def run(self, jobs, on_result) -> None:
        for job in jobs:
            job.dir.mkdir(parents=True, exist_ok=True)
            write_json(job.dir / "scores.json", {"corpus": {"CIDEr": 0.25}, "unavailable": {"SPICE": REASON}})
        super().run(jobs, on_result)


def test_a_note_every_job_repeats_is_printed_once_per_run(write_config, monkeypatch):
    monkeypatch.setattr("bench.suite.make_executor", lambda cfg: ScoringExecutor())
    monkeypatch.setattr("bench.report.build_report", lambda *a, **k: [])
    messages: list[str] = []
    run_suite(load_config(write_config(SUITE)), "mini", echo=messages.append)
    notes = [m for m in messages if REASON in m]
    assert len(notes) == 1 and notes[0].startswith("note: SPICE unavailable")
    assert sum(m.startswith("[") for m in messages) == 3  # every job's line still there


def test_the_live_view_counts_finished_and_failed_jobs_with_the_time_left(tmp_path, capsys):
    class Job:
        def __init__(self, label):
            self.label, self.seed, self.dir, self.key = label, 0, tmp_path / label, label

    progress = SuiteProgress(3, print, live=True)
    progress.job_done(Job("a"), {"status": "ok"})
    time.sleep(0.2)
    progress.job_done(Job("b"), {"status": "failed"})
    err = capsys.readouterr().err
    assert "jobs 2/3" in err and "1 ok, 1 failed; last: b s0 failed" in err
    assert "<00:" in err  # tqdm's estimate of the time left
    progress.close()


def test_the_live_view_shows_each_running_job_with_its_phase_and_latest_line(tmp_path, capsys):
    class Job:
        def __init__(self, label, seed):
            self.label, self.seed, self.key, self.dir = label, seed, f"{label}{seed}", tmp_path / f"{label}{seed}"
            self.dir.mkdir()

    training, waiting, ended = Job("mdm-mini", 1), Job("ladic-mini", 0), Job("vit-gpt2-mini", 2)
    (training.dir / ".phase").write_text("train")
    (training.dir / "log.txt").write_text("12:00:00 [mdm-mini/shapes/s1] train: 12 epoch(s)\n"
                                          "12:00:20 [mdm-mini/shapes/s1] epoch 1: loss 1.91 (20s; about 3.6 min left)\n\n")
    (ended.dir / ".phase").write_text("eval")
    progress = SuiteProgress(3, print, live=True, jobs=[training, waiting, ended], refresh=0.05)
    progress.job_done(ended, {"status": "ok"})
    assert progress.running() == ["mdm-mini s1 [train] epoch 1: loss 1.91 (20s; about 3.6 min left)"]
    time.sleep(0.5)  # the watcher draws it below the bar
    assert "mdm-mini s1 [train] epoch 1: loss 1.91" in capsys.readouterr().err
    (training.dir / ".phase").write_text("errprop")
    (training.dir / "log.txt").open("a").write("12:05:00 [mdm-mini/shapes/s1] errprop: injection, level 0.5\n")
    assert progress.running() == ["mdm-mini s1 [errprop] errprop: injection, level 0.5"]
    progress.close()


@pytest.mark.java
def test_the_runner_says_which_phase_a_job_is_in_and_clears_it_at_the_end(write_config, monkeypatch):
    from bench import runner
    from bench.plan import plan_suite

    job = plan_suite(load_config(write_config(SUITE)), "mini", only=["constant"])[0]
    seen = []
    mark = runner.mark_phase

    def recording(job, name):
        mark(job, name)
        seen.append((job.dir / ".phase").read_text())

    monkeypatch.setattr(runner, "mark_phase", recording)
    assert runner.run_job(job)["status"] == "ok"
    assert seen == ["prepare", "eval"]  # the constant has nothing to train
    assert not (job.dir / ".phase").exists()


def _bench_run(path: Path, *extra: str) -> str:
    command = [sys.executable, "-m", "bench.cli", "run", "--suite", "mini", "--config", str(path),
               "--executor", "ray", "--force", *extra]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=path.parent,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.java
def test_ray_worker_lines_go_to_the_job_log_and_to_the_console_only_when_verbose(write_config):
    path = write_config("""
        tracking: {kind: none}
        executor: {kind: ray, num_cpus: 1}
        suites:
          mini: {tasks: [shapes], phases: [eval], models: [constant]}
        """)
    job_line = "[constant/shapes/s0]"
    quiet = _bench_run(path)
    (log,) = (load_config(path).results_dir / "mini").glob("constant*/log.txt")
    assert job_line in log.read_text() and job_line not in quiet
    assert job_line in _bench_run(path, "--verbose")


def test_training_says_how_long_it_has_left_after_each_epoch(tiny_shapes, tmp_path):
    from bench.config import TrainConfig
    from bench.registry import create_captioner
    from bench.train import train

    samples = tiny_shapes.samples("train")[:6]
    model = create_captioner("vit-gpt2-tiny")
    model.prepare(samples)
    lines: list[str] = []
    train(model, samples, TrainConfig(epochs=3, batch_size=8), tmp_path, seed=0, log=lines.append)
    ends = [line for line in lines if line.startswith("epoch ") and ": loss " in line]
    assert len(ends) == 3
    assert all("s left)" in line for line in ends[:2]) and "left" not in ends[2], ends
