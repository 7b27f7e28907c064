"""A suite's MLflow store built through the tracker from hand-made result files (known numbers), for the
tests of the UI links and of what the parent run shows."""

from __future__ import annotations

from pathlib import Path

#: CIDEr per (label, seed): the runs table shows each, and the group rows their mean over seeds.
CIDER = {("constant", 0): 0.312, ("constant", 1): 0.334, ("nearest-neighbour", 0): 0.871,
         ("nearest-neighbour", 1): 0.893}
VERDICT_CSV = """axis,A,B,A - B,interval (Holm-adjusted),p (Holm),verdict
BLEU-4,diffusion: nearest-neighbour,autoregressive: constant,+12.0,"[+8.0, +16.0]",0.0012,diffusion ahead
CIDEr,diffusion: nearest-neighbour,autoregressive: constant,+55.9,"[+40.1, +70.2]",0.0004,diffusion ahead
latency at CIDEr >= 31.2 (batch 1),diffusion: nearest-neighbour 3.0 ms,autoregressive: constant 1.0 ms,x3.00,–,–,not tested (timings; autoregressive faster)
# commit: abc1234
"""
MAIN_CSV = """model,paradigm,seeds,CIDEr,CIDEr_low,CIDEr_high
constant,reference,0 1,32.3,30.0,34.0
nearest-neighbour,reference,0 1,88.2,85.0,90.0
# commit: abc1234
"""
ANSWER = ("shapes: CIDEr: diffusion ahead (diffusion: nearest-neighbour vs autoregressive: constant, A - B +55.9 "
          "[+40.1, +70.2], p 0.0004); latency at CIDEr >= 31.2 (batch 1): not tested (timings; autoregressive "
          "faster) (diffusion: nearest-neighbour 3.0 ms vs autoregressive: constant 1.0 ms, A / B = 3.00)")


def build_store(write_config, tmp_path: Path) -> Path:
    """A config whose suite `ui` (2 models x 2 seeds on shapes) has results, a report and a tracked store."""
    from PIL import Image

    from bench import files
    from bench.config import load_config
    from bench.results import write_json
    from bench.suite import plan_absolute
    from bench.tracking import make_tracker

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    config = write_config(f"""
        executor: {{kind: local}}
        tracking: {{kind: mlflow, uri: "{uri}", experiment: "diffcap-bench/{{suite}}"}}
        suites:
          ui:
            tasks: [shapes]
            models: [constant, nearest-neighbour]
            seeds: [0, 1]
        """)
    cfg = load_config(config)
    jobs, _ = plan_absolute(cfg, "ui")
    report = jobs[0].dir.parent / "report"
    (report / "figures").mkdir(parents=True)
    (report / "shapes-verdict.csv").write_text(VERDICT_CSV)
    (report / "shapes-main.csv").write_text(MAIN_CSV)
    Image.new("RGB", (40, 30), (200, 30, 30)).save(report / "figures" / "shapes-quality_vs_latency.png")
    tracker = make_tracker(cfg.tracking, jobs[0].dir.parent.parent, warn=_fail)
    tracker.start("ui", {"suite": "ui"})
    for job in jobs:
        cider = CIDER[(job.label, job.seed)]
        result = {"key": job.key, "job_id": job.job_id, "label": job.label, "model": job.model, "task": job.task,
                  "seed": job.seed, "status": "ok", "metrics": {"CIDEr": cider, "BLEU-4": cider / 2,
                                                                "latency_median_s": 0.001 + job.seed / 1000}}
        job.dir.mkdir(parents=True)
        write_json(job.dir / files.RESULT, result)
        assert tracker.log_job(job, result)
    tracker.finish("FINISHED")
    return config


def _fail(message: str) -> None:
    raise AssertionError(message)
