"""The files `bench device-check` writes: results.json, device-check.md and latency_vs_length.png.

The figure is LaDiC's figure 2a measured: batch-1 latency against the forced generated length for
every model with a forced-length probe, and each diffusion model's latency (which does not depend on
the length) as a horizontal line. The paper's approximate values, read off its plot, are drawn as their
own grey points, labelled as published, never mixed with the measured lines.

`merge` combines the results.json of several runs (`bench device-check --merge`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: LaDiC paper, figure 2a, read off the plot (approximate; hardware, batch and steps not stated).
PAPER_FIG2A = {"BLIP (paper, approx.)": [(8, 0.17), (16, 0.28)], "LaDiC (paper, approx.)": [(8, 0.105), (16, 0.105)]}
#: Steps drawn in the figure besides each diffusion model's fewest and most: LaDiC's paper reports its
#: results at 5 and 30 steps (its table's rows; 5 steps is its first released commit's stride 200).
FIGURE_STEPS = {"ladic-base": (5,)}


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{1000 * seconds:.2f}"


def _n(count: int, noun: str) -> str:
    """'1 step', '5 steps'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _setting(setting: dict[str, Any]) -> str:
    keys = ("steps", "mode", "num_beams", "max_new_tokens", "guidance")
    return ", ".join(f"{k}={setting[k]}" for k in keys if k in setting)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def _runs(results: dict[str, Any]) -> str:
    """The runs a merged result comes from, and which models each one supplied."""
    source = {m["model"]: m.get("run") for m in results["models"]}
    rows = []
    for run in results["runs"]:
        models = [name if source.get(name) == run["run"] else f"{name} (replaced by run {source.get(name)})"
                  for name in run["models"]]
        command = "–" if "argv" not in run else "`" + " ".join(["device-check", *run["argv"]]) + "`"
        rows.append([str(run["run"]), f"`{run['path']}`", ", ".join(models) or "–",
                     str(run.get("max_batch", "not recorded")), command])
    n = len(results["runs"])
    return (f"Merged from {n} run{'s' if n != 1 else ''} (`bench device-check --merge`); every model's "
            "measurements come from one run (a later run replaces an earlier run's model):\n\n"
            + _table(["run", "results of", "models", "largest throughput batch", "command"], rows))


def _environment(env: dict[str, Any]) -> list[str]:
    """The environment as a few lines: versions, kernel switches, load and other GPU tenants."""
    if "torch_backends" not in env:  # a run from before these were recorded
        return ["Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()) + "\n"]
    keys = ("device", "gpu", "gpu_memory_gib", "driver", "cuda", "cudnn", "torch", "transformers", "python", "cpu")
    dirty = {True: " (uncommitted changes)", False: "", "unknown": " (dirty: unknown)"}.get(env.get("dirty"), "")
    lines = ["Environment: " + ", ".join(f"{k} {env[k]}" for k in keys if k in env)
             + f", commit {env.get('commit', 'unknown')}{dirty}.\n"]
    tb = env["torch_backends"]
    sdpa = ", ".join(f"{k} {v}" for k, v in tb.get("sdpa_enabled", {}).items())
    lines.append(f"Kernel switches: TF32 matmul {tb['matmul_allow_tf32']}, TF32 cuDNN {tb['cudnn_allow_tf32']}, "
                 f"float32 matmul precision {tb['float32_matmul_precision']}; cuDNN enabled "
                 f"{tb['cudnn_enabled']}, benchmark {tb['cudnn_benchmark']}, deterministic "
                 f"{tb['cudnn_deterministic']}; SDPA backends enabled: {sdpa}.\n")
    load, procs = [], []
    for at in ("start", "end"):
        snap = env.get(at) or {}
        load.append(f"{at} {snap.get('load_average', 'not recorded')}")
        p = snap.get("gpu_processes")
        if isinstance(p, list):
            held = ", ".join(f"{q['name']} {q['used_memory_mib']} MiB" for q in p)
            procs.append(f"{at} {len(p)}" + (f" ({held})" if held else ""))
        else:
            procs.append(f"{at} {(p or {}).get('unavailable', 'not recorded')}")
    lines.append(f"Load average (1, 5, 15 min): {'; '.join(load)}. Processes on the GPU: {'; '.join(procs)}. "
                 f"GPU clocks, power and temperature: {env.get('gpu_sampling', 'not recorded')}.\n")
    return lines


def _protocol(results: dict[str, Any]) -> str:
    tiny = " (test-sized variants: --tiny)" if results["tiny"] else ""
    if "warmup" not in results:  # a run from before the interleaved protocol
        return (f"Random weights at each model's real architecture{tiny}; batch-1 latency is the median over "
                f"{_n(results['images'], 'image')} of the median of {_n(results['repeats'], 'repeat')}, after "
                "one warm-up, settings timed back to back. bf16 = autocast.\n")
    return (f"Random weights at each model's real architecture{tiny}. Batch-1 latency: the settings of each "
            f"(dtype, stack) block get {_n(results['warmup'], 'warm-up call')} each, then "
            f"{_n(results['repeats'], 'round')}; round r times every setting once, in an order rotated by r, "
            f"on image r mod {results['images']}. ms = median wall time of the timed calls (device synchronised), "
            "CUDA ms = median of CUDA events around the same calls. bf16 = weights converted (no autocast). "
            "Every model's eager blocks ran before any compiled one.\n")


def _sentinel(models: list[dict[str, Any]]) -> list[str]:
    """The sentinel's medians and drift per model, and a warning line for each drift above 1.10."""
    from bench.device_timing import DRIFT_WARNING

    rows, warnings = [], []
    for m in models:
        s = m.get("sentinel")
        if not s or not s.get("points"):
            continue
        at = {p["at"]: p["seconds"] for p in s["points"]}
        drift = s.get("drift")
        rows.append([m["model"], _setting(s["setting"]), *(_ms(at.get(k)) for k in ("start", "middle", "end")),
                     "–" if drift is None else f"{drift:.3f}"])
        if drift is not None and drift > DRIFT_WARNING:
            warnings.append(f"**Warning: {m['model']}'s sentinel drifted {drift:.2f}x** (max/min of its medians, "
                            f"above {DRIFT_WARNING:.2f}): the machine changed during its measurements, so "
                            "differences between its settings smaller than that are not resolved.\n")
    if not rows:
        return []
    return ["## Sentinel (default decoding, fp32 eager) and drift\n",
            _table(["model", "setting", "start ms", "middle ms", "end ms", "drift (max/min)"], rows), *warnings]


def _gpu_conditions(models: list[dict[str, Any]]) -> list[str]:
    """GPU clocks, power, temperature and throttling during each model pass (min / median / max)."""
    rows, missing = [], set()
    for m in models:
        for name, g in (m.get("gpu_samples") or {}).items():
            if not g.get("available"):
                missing.add(g.get("reason", "unavailable"))
                continue
            cells = ["–" if g[k] is None else f"{g[k]['min']:.0f} / {g[k]['median']:.0f} / {g[k]['max']:.0f}"
                     for k in ("sm_clock_mhz", "mem_clock_mhz", "power_w", "temperature_c")]
            throttled = ", ".join(f"{k} {100 * v:.0f}%" for k, v in g["throttle_reasons"].items()) or "none"
            rows.append([m["model"], name, str(g["samples"]), *cells, throttled])
    if rows:
        return ["## GPU conditions per model pass (min / median / max)\n",
                _table(["model", "pass", "samples", "SM MHz", "memory MHz", "power W", "temperature C",
                        "throttle reasons (share of samples)"], rows)]
    return [f"GPU clocks, power and temperature: unavailable ({'; '.join(sorted(missing))}).\n"] if missing else []


def markdown(results: dict[str, Any]) -> str:
    parts = ["# Device check\n", _protocol(results), *_environment(results["environment"])]
    if results.get("runs"):
        parts += [_runs(results)]
    models = results["models"]
    lat = [[m["model"], r["dtype"], r.get("stack", "eager"), _setting(r["setting"]), _ms(r["seconds"]),
            _ms(r.get("cuda_seconds")), f"{_ms(r['min_s'])}–{_ms(r['max_s'])}",
            "–" if r["network_evals"] is None else f"{r['network_evals']:g}"]
           for m in models for r in m.get("latency", [])]
    parts += ["## Batch-1 latency\n", _table(["model", "dtype", "stack", "setting", "ms / caption", "CUDA ms",
                                              "min–max ms", "network evals"], lat)]
    parts += _sentinel(models)
    unsupported = [[m["model"], u["dtype"], u["stack"], u["reason"]] for m in models for u in m.get("unsupported", [])]
    if unsupported:
        parts += ["## Not timed: a dtype or stack the captioner does not declare\n",
                  _table(["model", "dtype", "stack", "reason"], unsupported)]
    same = [[m["model"], r["knob"], r["dtype"], r.get("stack", "eager"), _setting(r["setting"]),
             "yes" if r["identical"] else "NO"] for m in models for r in m.get("identical", [])]
    if same:
        parts += ["## Same captions across loop structures\n",
                  _table(["model", "compared", "dtype", "stack", "setting", "identical captions"], same)]
    comp = [[m["model"], r["dtype"], r.get("stack", "compiled"), _setting(r["setting"]), _ms(r["eager_s"]),
             _ms(r["compiled_s"]), f"{r['eager_s'] / r['compiled_s']:.2f}x", "yes" if r["identical"] else "NO"]
            for m in models for r in m.get("compiled", [])]
    if comp:
        parts += ["## Compiled against eager (same dtype and decoding)\n",
                  _table(["model", "dtype", "stack", "setting", "eager ms", "compiled ms", "speed-up",
                          "identical"], comp)]
    parts += _throughput(models) + _training(models) + _gpu_conditions(models)
    errors = [[m["model"], part, msg] for m in models for part, msg in (m.get("errors") or {}).items()]
    errors += [[m["model"], "all", m["error"]] for m in models if "error" in m]
    if errors:
        parts += ["## Not measured\n", _table(["model", "part", "error"], errors)]
    return "\n".join(parts)


def _throughput(models: list[dict[str, Any]]) -> list[str]:
    tput = []
    for m in models:
        for dtype, rows in (m.get("throughput") or {}).items():
            ok = [r for r in rows or [] if "images_per_s" in r]
            if ok:
                at64 = next((r for r in ok if r["batch_size"] == 64), None)
                best = max(ok, key=lambda r: r["images_per_s"])
                failed = [f"{r['batch_size']}: {r['error']}" for r in rows if "error" in r]
                largest = str(max(r["batch_size"] for r in ok)) + (f" ({'; '.join(failed)})" if failed else "")
                decoding = m.get("default_decoding")
                tput.append([m["model"], dtype, "–" if at64 is None else f"{at64['images_per_s']:.1f}",
                             f"{best['images_per_s']:.1f} (batch {best['batch_size']})", largest,
                             "not recorded" if decoding is None else
                             ", ".join(f"{k}={v}" for k, v in decoding.items() if v is not None and k != "prompt")])
    if not tput:
        return []
    header = ["model", "dtype", "images/s at batch 64", "best images/s", "largest batch run", "decoding"]
    if not any("default_decoding" in m for m in models):
        header, tput = header[:-1], [r[:-1] for r in tput]
    return ["## Throughput (each model's default decoding, eager)\n", _table(header, tput)]


def _training(models: list[dict[str, Any]]) -> list[str]:
    train = [[m["model"], str(t["batch_size"]), _ms(t["seconds"]),
              "–" if t["peak_memory_gib"] is None else f"{t['peak_memory_gib']:.1f}",
              f"{t['trainable_parameters'] / 1e6:.1f}M", f"{t['coco_epoch_hours']:.2f}", f"{t['epochs']:g}",
              f"{t['schedule_hours']:.1f}"]
             for m in models if (t := m.get("training"))]
    if not train:
        return []
    return ["## One training step (fp32 weights, bf16 autocast, AdamW)\n",
            _table(["model", "batch", "ms / step", "peak GiB", "trainable", "h / COCO epoch", "epochs",
                    "h / schedule"], train),
            "A COCO epoch is 566,435 (image, caption) pairs (Karpathy train, 5 captions each); the "
            "projection multiplies the step time, so data loading is not included.\n"]


def figure(results: dict[str, Any], path: Path) -> Path | None:
    """Latency against forced generated length (greedy and 3 beams); diffusion models as flat lines at
    the fewest and the most steps measured; eager stack. The paper's approximate points in grey."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    dtype = "bf16" if any(r["dtype"] == "bf16" for m in results["models"] for r in m.get("latency", [])) else "fp32"
    fig = Figure(figsize=(3.3, 3.0), layout="constrained")
    ax = fig.subplots()
    colours = iter(f"C{i}" for i in range(10))
    drawn = 0
    for m in results["models"]:
        rows = [r for r in m.get("latency", []) if r["dtype"] == dtype and r.get("stack", "eager") == "eager"]
        colour = next(colours)
        for beams, style in ((1, "-"), (3, "--")):
            pts = sorted((r["setting"]["max_new_tokens"], r["seconds"]) for r in rows
                         if "max_new_tokens" in r["setting"] and r["setting"].get("num_beams") == beams
                         and r["setting"].get("min_new_tokens") == r["setting"]["max_new_tokens"])
            if pts:
                ax.plot([p[0] for p in pts], [1000 * p[1] for p in pts], style, marker="o", markersize=3,
                        color=colour, label=f"{m['model']}, {'greedy' if beams == 1 else f'{beams} beams'}")
                drawn += 1
        flat = sorted((r["setting"]["steps"], r["seconds"]) for r in rows
                      if "steps" in r["setting"] and r["setting"].get("mode", "optimized") == "optimized")
        if flat:
            # Fewest steps dotted, the paper's step counts dash-dot-dotted, most steps dash-dotted.
            lines = {flat[0][0]: ":", **{s: (0, (5, 1.5, 1, 1.5, 1, 1.5)) for s in FIGURE_STEPS.get(m["model"], ())},
                     flat[-1][0]: "-."}
            for steps, seconds in flat:
                if steps in lines:
                    ax.axhline(1000 * seconds, linestyle=lines[steps], linewidth=1.2, color=colour,
                               label=f"{m['model']}, {_n(steps, 'step')}")
                    drawn += 1
    if not drawn:
        return None
    for (label, pts), marker in zip(PAPER_FIG2A.items(), ("x", "+"), strict=True):
        ax.plot([p[0] for p in pts], [1000 * p[1] for p in pts], linestyle="none", marker=marker, color="0.4",
                markersize=5, label=label)
    ax.set_yscale("log")
    ax.margins(y=0.08)  # a flat line at the top or bottom of the range stays clear of the frame
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("generated length (tokens)", fontsize=8)
    ax.set_ylabel(f"ms / caption, batch 1 ({dtype})", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.legend(loc="outside lower center", ncol=2, fontsize=6, frameon=False)
    fig.set_size_inches(3.3, 2.3 + 0.075 * (drawn + 2))
    fig.savefig(path, dpi=200, metadata={"Software": "bench device-check"})
    return path


def write_outputs(results: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    slim = json.loads(json.dumps(results, default=str))
    for m in slim["models"]:
        for r in m.get("latency", []):
            r["captions"] = r["captions"][:2]  # a sample; the identical-captions check used them all
    (out / "results.json").write_text(json.dumps(slim, indent=1, sort_keys=True) + "\n")
    written.append(out / "results.json")
    (out / "device-check.md").write_text(markdown(results))
    written.append(out / "device-check.md")
    fig = figure(results, out / "latency_vs_length.png")
    if fig is not None:
        written.append(fig)
    return written


#: What each run records about how it was invoked (kept per run in merged results).
RUN_KEYS = ("max_batch", "dtypes", "stacks", "argv", "started_unix")
#: What merged runs must agree on: (where it is recorded, key).
MERGE_MUST_AGREE = (("environment", "gpu"), ("environment", "torch"), ("environment", "transformers"),
                    (None, "images"), (None, "repeats"), (None, "warmup"), (None, "tiny"))


class MergeError(ValueError):
    """Runs that cannot be merged (missing file, or different settings or environment)."""


def merge(directories: list[Path]) -> dict[str, Any]:
    """One results dict from the results.json of each of `directories`, in order.

    A model in a later run replaces the same model of an earlier one (keeping its place). The merged
    results hold a "runs" list (number from 1, path, the models each run measured, and its max_batch,
    dtypes, stacks, argv and start where the run recorded them) and every model a "run": the number of the run its
    measurements come from."""
    loaded = []
    for directory in directories:
        path = directory / "results.json"
        try:
            loaded.append((path, json.loads(path.read_text())))
        except (OSError, ValueError) as err:
            raise MergeError(f"cannot read {path}: {err}") from err
    first_path, first = loaded[0]
    differences = []
    for section, key in MERGE_MUST_AGREE:
        label = f"{section}.{key}" if section else key
        expected = _recorded(first, section, key)
        for path, results in loaded[1:]:
            if _recorded(results, section, key) != expected:
                differences.append(f"{label}: {first_path} has {expected!r}, {path} has "
                                   f"{_recorded(results, section, key)!r}")
    if differences:
        raise MergeError("the runs differ in " + "; ".join(differences))
    merged: dict[str, Any] = {k: v for k, v in first.items() if k not in ("models", *RUN_KEYS)}
    merged["runs"], merged["models"] = [], []
    where: dict[str, int] = {}
    for number, (path, results) in enumerate(loaded, start=1):
        run = {"run": number, "path": str(path.parent), "models": [m["model"] for m in results["models"]]}
        run.update({k: results[k] for k in RUN_KEYS if k in results})
        if results.get("environment") != first.get("environment"):
            run["environment"] = results.get("environment")
        merged["runs"].append(run)
        for model in results["models"]:
            model = {**model, "run": number}
            if model["model"] in where:
                merged["models"][where[model["model"]]] = model
            else:
                where[model["model"]] = len(merged["models"])
                merged["models"].append(model)
    return merged


def _recorded(results: dict[str, Any], section: str | None, key: str) -> Any:
    return (results.get(section) or {}).get(key) if section else results.get(key)
