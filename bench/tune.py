"""Choose decoding settings on the validation split: `python -m bench.tune JOB_DIR --grid knob=v1,v2 ...`.

Loads a finished job's trained model (JOB_DIR/model; the model and task named in JOB_DIR/job.json),
captions the first `--images` readable images of the validation split under every combination of the
grid's values (each knob and value checked against the captioner's declaration before any work), scores
each combination over those images in one call (CIDEr-D and BLEU-4 from pycocoevalcap), and prints one
row per combination, best first by `--metric`, with the mean network evaluations per caption. The test
split is never read, so settings chosen here can be used on it without selection bias. A combination the
captioner refuses (e.g. random remasking with a threshold) is a row with the reason, not a failure.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.metrics.quality import ERRPROP_METRICS

TUNE_METRICS = ERRPROP_METRICS  # CIDEr-D and BLEU-4, the headline pair


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """["steps=2,4", "threshold=0,0.9"] -> {"steps": [2, 4], "threshold": [0, 0.9]} (YAML scalars)."""
    import yaml

    grid: dict[str, list[Any]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name or not values:
            raise ValueError(f"--grid {item!r}: expected knob=value[,value...], e.g. steps=2,4,8")
        if name in grid:
            raise ValueError(f"--grid: knob {name!r} given twice; list its values once")
        grid[name] = [yaml.safe_load(v) for v in values.split(",")]
    return grid


def tune(job_dir: Path, grid: dict[str, list[Any]], images: int = 100, batch_size: int = 50,
         split: str = "val", metric: str = "CIDEr", log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One row per combination of `grid`: its settings, the scores (x100), the mean network evaluations
    per caption, or the captioner's reason for refusing it; sorted best first by `metric`."""
    import torch

    from bench import files, samples
    from bench.metrics.quality import score_captions
    from bench.registry import captioner_class, create_task
    from bench.results import read_json

    if metric not in TUNE_METRICS:
        raise ValueError(f"--metric {metric!r} is not accepted; accepted: {', '.join(TUNE_METRICS)}")
    if split == "test":
        raise ValueError("decoding settings are chosen on the validation split (or train), never on test")
    job = read_json(Path(job_dir) / files.JOB)
    cls = captioner_class(job["model"])
    combos = [cls.check_decoding(dict(zip(grid, values, strict=True)), where="--grid")
              for values in itertools.product(*grid.values())]
    model = cls.load(Path(job_dir) / "model")
    task = create_task(job["task_class"], **job["task_options"])
    kept, pixels, skipped = samples.readable(task.samples(split), model, images)
    if pixels is None:
        raise RuntimeError(f"{job_dir}: no readable {split} image")
    log(f"{job['model']} on {len(kept)} {split} images ({len(skipped)} unreadable skipped), "
        f"{len(combos)} setting(s)")
    references = {s.image_id: list(s.references) for s in kept}
    rows = []
    for settings in combos:
        captions: list[str] = []
        evals: list[int] = []
        try:
            with torch.inference_mode():
                for start in range(0, len(kept), batch_size):
                    out = model.generate(pixels[start:start + batch_size].to(model.device), **settings)
                    captions += out.captions
                    evals += out.network_evals or []
        except ValueError as err:
            rows.append({**settings, "error": str(err)})
            continue
        scores = score_captions(dict(zip(references, captions, strict=True)), references, TUNE_METRICS)
        rows.append({**settings, **{m: 100 * scores.corpus[m] for m in TUNE_METRICS},
                     "network evals": sum(evals) / len(evals) if evals else None})
    return sorted(rows, key=lambda r: -r.get(metric, float("-inf")))


def format_table(rows: list[dict[str, Any]], knobs: list[str]) -> str:
    """A markdown table: the knobs, the scores, the network evaluations (or the refusal)."""
    header = [*knobs, *TUNE_METRICS, "network evals"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row[k]) for k in knobs]
        if "error" in row:
            cells += ["refused: " + row["error"], "", ""]
        else:
            evals = row["network evals"]
            cells += [f"{row[m]:.1f}" for m in TUNE_METRICS] + ["-" if evals is None else f"{evals:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tune", description=__doc__.splitlines()[0])
    parser.add_argument("job_dir", type=Path, help="a finished job's folder (job.json, model/)")
    parser.add_argument("--grid", action="append", default=[], metavar="KNOB=V1,V2",
                        help="a decoding knob and its values; repeat for more knobs (every combination runs)")
    parser.add_argument("--images", type=int, default=100, help="the first N readable images of the split")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--split", default="val", choices=("val", "train"))
    parser.add_argument("--metric", default="CIDEr", choices=TUNE_METRICS, help="the order of the rows")
    args = parser.parse_args(argv)
    try:
        grid = parse_grid(args.grid)
        if not grid:
            raise ValueError("give at least one --grid knob=values")
        rows = tune(args.job_dir, grid, args.images, args.batch_size, args.split, args.metric,
                    log=lambda m: print(m, file=sys.stderr))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_table(rows, list(grid)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
