"""The reproducibility footer printed under every table: commit, packages, hardware, date, images, seeds,
and the pretrained weights the jobs started from (source and identity, from each job's job.json).

Everything comes from the result files except the commit and the versions of packages the results do
not record, which are read from the checkout and the installed distributions. The date is the day the
newest job finished, never the clock, so the same results give the same report byte for byte.
"""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from bench.report.data import Entry

#: Distribution names whose versions the footer states, with the name printed for each.
PACKAGES = {"torch": "torch", "transformers": "transformers", "pycocoevalcap": "pycocoevalcap",
            "diffcap-bench": "bench"}
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Provenance:
    """What a reader needs to reproduce a table."""

    commit: str
    packages: dict[str, str]
    hardware: list[str]
    date: str
    images: list[int]
    seeds: list[int]
    weights: list[str] = field(default_factory=list)  # "source (identity)" of every pretrained weights used
    # From each job's recorded environment (bench/environment.py); several values: the runs differ.
    cpu: list[str] = field(default_factory=list)  # CPU model names
    numerics: list[str] = field(default_factory=list)  # "mode/torch CPU capability, MKL ..., oneDNN ..."
    threads: list[str] = field(default_factory=list)
    python: list[str] = field(default_factory=list)
    lock: list[str] = field(default_factory=list)  # "digest" or "digest + N differing: a 1.0 (lock 1.1)"
    gpu: list[str] = field(default_factory=list)
    code: list[str] = field(default_factory=list)  # commit each job ran at (+ "dirty")
    made_from: str = ""  # the job set and invocation (bench/derived.py)
    mixed: str = ""  # where rows ran in different numerics modes / kernel paths: which rows on which

    def to_dict(self) -> dict:
        return asdict(self)


def git_commit(repo: Path = REPO_ROOT) -> str:
    """HEAD of the checkout the report is made from (12 hex digits), or 'unknown' outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit[:12] if out.returncode == 0 and commit else "unknown"


def _installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _environments(runs) -> dict[str, list[str]]:
    """The footer's environment lines, each the sorted distinct values over the runs that recorded one."""
    from bench.environment import field as get
    from bench.environment import kernel_path

    envs = [run.result.get("environment") for run in runs if run.result.get("environment")]
    out: dict[str, set[str]] = {k: set() for k in ("cpu", "numerics", "threads", "python", "lock", "gpu", "code")}
    for env in envs:
        out["cpu"].add(str(env.get("cpu_model")))
        out["numerics"].add(f"{kernel_path(env)} (MKL_CBWR {get(env, 'kernels.MKL_CBWR') or 'unset'}, "
                            f"oneDNN {get(env, 'kernels.ONEDNN_MAX_CPU_ISA') or 'unset'}, deterministic "
                            f"{get(env, 'kernels.deterministic_algorithms')})")
        out["threads"].add(f"{get(env, 'kernels.threads')} intra-op, {get(env, 'kernels.interop_threads')} inter-op")
        out["python"].add(str(env.get("python")))
        differs = get(env, "packages.differs") or {}
        out["lock"].add(f"{get(env, 'packages.lock')}" + (
            f" + {len(differs)} differing: " + ", ".join(f"{k} {v}" for k, v in differs.items()) if differs else ""))
        if env.get("gpu"):
            g = env["gpu"]
            out["gpu"].add(f"{g.get('device')} driver {g.get('driver')} CUDA {g.get('cuda')} cuDNN {g.get('cudnn')} "
                           f"cudnn.deterministic {g.get('cudnn_deterministic')}")
        out["code"].add(str(env.get("commit", "unknown"))[:12] + (" dirty" if env.get("dirty") else ""))
    if len(envs) < len(runs):
        out["numerics"].add("unrecorded")
    return {k: sorted(v) for k, v in out.items()}


def kernel_paths(entries: list[Entry]) -> dict[str, list[str]]:
    """numerics mode/CPU capability -> the rows (labels) with a run on it; one key: every row comparable."""
    from bench.environment import kernel_path

    paths: dict[str, set[str]] = {}
    for e in entries:
        for run in e.runs:
            paths.setdefault(kernel_path(run.result.get("environment")), set()).add(e.label)
    return {k: sorted(v) for k, v in sorted(paths.items())}


def provenance(entries: list[Entry], commit: str | None = None, made_from: str = "") -> Provenance:
    """Collect the footer's facts from the runs of `entries` (commit: override, else `git rev-parse HEAD`)."""
    runs = [run for e in entries for run in e.runs]
    paths = kernel_paths(entries)
    mixed = ("MIXED, paired rows not like for like: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in paths.items())
             if len(paths) > 1 else "")
    recorded: dict[str, set[str]] = {}
    hardware = set()
    for run in runs:
        env = (run.latency or {}).get("environment") or {}
        for key in ("torch", "transformers"):
            if env.get(key):  # the version the latency phase actually ran with beats what is installed now
                recorded.setdefault(key, set()).add(str(env[key]))
        if env.get("device"):
            hardware.add(str(env["device"]))
        elif run.result.get("device"):
            host = run.result.get("host")
            hardware.add(str(run.result["device"]) + (f" ({host})" if host else ""))
    packages = {shown: ", ".join(sorted(recorded[dist])) if dist in recorded else _installed(dist)
                for dist, shown in PACKAGES.items()}
    finished = [run.finished for run in runs if run.finished is not None]
    date = (datetime.fromtimestamp(max(finished), tz=timezone.utc).strftime("%Y-%m-%d") if finished
            else "unknown")
    images = sorted({int(run.scores["images_scored"]) for run in runs
                     if run.scores and "images_scored" in run.scores}
                    | {int(run.result["metrics"]["images_scored"]) for run in runs
                       if "images_scored" in run.result.get("metrics", {})})
    seeds = sorted({int(run.result.get("seed", 0)) for run in runs})
    from models.weights import portable_source

    weights = sorted({f"{portable_source(w['source'])} ({w['identity']})" for run in runs
                      for w in (run.job.get("weights") or {}).values()})
    return Provenance(commit=commit if commit is not None else git_commit(), packages=packages,
                      hardware=sorted(hardware) or ["unknown"], date=date, images=images, seeds=seeds,
                      weights=weights, made_from=made_from, mixed=mixed, **_environments(runs))


def _items(p: Provenance) -> list[tuple[str, str]]:
    return [
        ("commit", p.commit),
        ("packages", ", ".join(f"{name} {version}" for name, version in p.packages.items())),
        ("hardware", "; ".join(p.hardware)),
        ("date", f"{p.date} (newest result)"),
        ("images", ", ".join(map(str, p.images)) or "unknown"),
        ("seeds", ", ".join(map(str, p.seeds)) or "unknown"),
        ("weights", ", ".join(p.weights) or "none pretrained"),
        *_environment_items(p),
    ]


def _environment_items(p: Provenance) -> list[tuple[str, str]]:
    """The recorded-environment lines that have values; several values of one say the runs differ."""
    items = [("numerics", "; ".join(p.numerics)), ("kernel paths", p.mixed),
             ("cpu", "; ".join(p.cpu)), ("threads", "; ".join(p.threads)), ("python", "; ".join(p.python)),
             ("lock", "; ".join(p.lock)), ("gpu", "; ".join(p.gpu)), ("code", "; ".join(p.code)),
             ("results", p.made_from)]
    return [(k, v) for k, v in items if v]


def footer_text(p: Provenance) -> str:
    """One plain line: `commit abc; packages ...; hardware ...; ...`."""
    return "; ".join(f"{k} {v}" for k, v in _items(p))


def footer_markdown(p: Provenance) -> str:
    return "<sub>" + " · ".join(f"**{k}** {v}" for k, v in _items(p)) + "</sub>\n"


def footer_csv(p: Provenance) -> str:
    """Trailing comment lines (read the table with `pandas.read_csv(path, comment='#')`)."""
    return "".join(f"# {k}: {v}\n" for k, v in _items(p))


def footer_latex(p: Provenance, escape) -> str:
    """A small paragraph for under a tabular; `escape` is the table module's LaTeX escaper."""
    return ("\\par\\smallskip\n{\\scriptsize\\raggedright "
            + "; ".join(f"{escape(k)}: {escape(v)}" for k, v in _items(p)) + "\\par}\n")
