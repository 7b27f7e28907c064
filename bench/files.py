"""The names of the files a job and a suite write: defined here once, used by every writer and reader.

A job's folder (`<results_dir>/<suite>/<job_id>/`) holds the job files; the suite's folder holds the
summaries. The names are a published layout (the README lists them, reports and MLflow mirror them):
renaming one here renames it everywhere, and old result folders then lack it.
"""

from __future__ import annotations

# -- a job's folder -------------------------------------------------------------------------------
JOB = "job.json"  # the job's settings (bench.plan.Job.to_dict), written first
WORKER = "worker.json"  # pid, host and start time of the process that runs it
PHASE = ".phase"  # the phase a running job is in (read by the live view; removed when the job ends)
RESULT = "result.json"  # status, headline metrics, timings: written last, so it marks an ended job
TRAIN = "train.json"  # the training report, written with the saved model
CAPTIONS = "captions.json"  # eval split: one caption per image
SCORES = "scores.json"  # eval split: corpus and per-image scores, intervals
SWEEP = "sweep.json"  # quality per decoding-knob value
LATENCY = "latency.json"
ERRPROP = "errprop.json"
DIVERSITY = "diversity.json"
SYSTEM_METRICS = "system_metrics.json"  # CPU, memory and GPU samples while the job ran
LOG = "log.txt"
OUTCOME = "outcome.json"  # a data-parallel job's rank-0 outcome, read back by the calling task
TOKENIZED = "tokenized.json"  # PTB-tokenised captions and references, cached for the paired tests

# -- a suite's folder -----------------------------------------------------------------------------
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
SEEDS = "seeds.json"  # per model: mean, standard deviation and two-level interval over seeds
COMPARISONS = "comparisons.json"  # the paired tests of the suite, Holm-corrected
DERIVED = "derived.json"  # the job set and command each derived file above was made from (bench/derived.py)
