"""The files `bench device-check` writes: results.json, device-check.md and latency_vs_length.png.

The figure is LaDiC's figure 2a measured: batch-1 latency against the forced generated length for
every model with a forced-length probe, and each diffusion model's latency (which does not depend on
the length) as a horizontal line. The paper's approximate values, read off its plot, are drawn as their
own grey points, labelled as published, never mixed with the measured lines.
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


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    parts = ["# Device check\n",
             "Random weights at each model's real architecture" + (" (test-sized variants: --tiny)" if results["tiny"]
                                                                   else "") + "; batch-1 latency is the median over "
             f"{_n(results['images'], 'image')} of the median of {_n(results['repeats'], 'repeat')}, after warm-up, device "
             "synchronised (CUDA events on a GPU). bf16 = autocast.\n",
             "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()) + "\n"]
    if results.get("runs"):
        parts += [_runs(results)]
    lat = [[m["model"], r["dtype"], _setting(r["setting"]), _ms(r["seconds"]),
            "–" if r["network_evals"] is None else f"{r['network_evals']:g}"]
           for m in results["models"] for r in m.get("latency", [])]
    parts += ["## Batch-1 latency\n", _table(["model", "dtype", "setting", "ms / caption", "network evals"], lat)]
    same = [[m["model"], r["knob"], r["dtype"], _setting(r["setting"]), "yes" if r["identical"] else "NO"]
            for m in results["models"] for r in m.get("identical", [])]
    if same:
        parts += ["## Same captions across loop structures\n",
                  _table(["model", "compared", "dtype", "setting", "identical captions"], same)]
    comp = [[m["model"], r["dtype"], _setting(r["setting"]), _ms(r["eager_s"]), _ms(r["compiled_s"]),
             f"{r['eager_s'] / r['compiled_s']:.2f}x", "yes" if r["identical"] else "NO"]
            for m in results["models"] for r in m.get("compiled", [])]
    if comp:
        parts += ["## Compiled sampling loop (torch.compile, CUDA graphs)\n",
                  _table(["model", "dtype", "setting", "eager ms", "compiled ms", "speed-up", "identical"], comp)]
    tput = []
    for m in results["models"]:
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
    if tput:
        header = ["model", "dtype", "images/s at batch 64", "best images/s", "largest batch run", "decoding"]
        if not any("default_decoding" in m for m in results["models"]):
            header, tput = header[:-1], [r[:-1] for r in tput]
        parts += ["## Throughput (each model's default decoding)\n", _table(header, tput)]
    train = [[m["model"], str(t["batch_size"]), _ms(t["seconds"]),
              "–" if t["peak_memory_gib"] is None else f"{t['peak_memory_gib']:.1f}",
              f"{t['trainable_parameters'] / 1e6:.1f}M", f"{t['coco_epoch_hours']:.2f}", f"{t['epochs']:g}",
              f"{t['schedule_hours']:.1f}"]
             for m in results["models"] if (t := m.get("training"))]
    if train:
        parts += ["## One training step (bf16 autocast, AdamW)\n",
                  _table(["model", "batch", "ms / step", "peak GiB", "trainable", "h / COCO epoch", "epochs",
                          "h / schedule"], train),
                  "A COCO epoch is 566,435 (image, caption) pairs (Karpathy train, 5 captions each); the "
                  "projection multiplies the step time, so data loading is not included.\n"]
    errors = [[m["model"], part, msg] for m in results["models"] for part, msg in (m.get("errors") or {}).items()]
    errors += [[m["model"], "all", m["error"]] for m in results["models"] if "error" in m]
    if errors:
        parts += ["## Not measured\n", _table(["model", "part", "error"], errors)]
    return "\n".join(parts)


def figure(results: dict[str, Any], path: Path) -> Path | None:
    """Latency against forced generated length (greedy and 3 beams); diffusion models as flat lines at
    the fewest and the most steps measured. The paper's approximate points in grey, labelled as such."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    dtype = "bf16" if any(r["dtype"] == "bf16" for m in results["models"] for r in m.get("latency", [])) else "fp32"
    fig = Figure(figsize=(3.3, 3.0), layout="constrained")
    ax = fig.subplots()
    colours = iter(f"C{i}" for i in range(10))
    drawn = 0
    for m in results["models"]:
        rows = [r for r in m.get("latency", []) if r["dtype"] == dtype]
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
