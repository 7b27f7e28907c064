"""`bench`: the command line. Imports stay inside the commands, so `bench --help` is instant."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EXAMPLES = """examples:
  bench run --suite shapes                  the offline default suite (CPU, minutes)
  bench run --suite coco --address auto     on a running Ray cluster
  bench run --suite shapes --set executor.kind=local --set suites.shapes.seeds=[0,1]
  bench list                                captioners, tasks and suites
  bench report --suite shapes               tables from the result files
  bench ui                                  MLflow UI on the configured store
"""


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="bench.yaml", help="suite file (default: bench.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value by dotted key, e.g. executor.kind=local (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench", description="DiffCap-Bench: diffusion vs autoregressive image captioners.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a suite: train, caption, score, track")
    run.add_argument("--suite", required=True)
    _add_config_args(run)
    run.add_argument("--force", action="store_true", help="rerun jobs even if their results exist")
    run.add_argument("--only", default="", help="comma-separated model labels/names to run")
    run.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or a local instance)")
    run.add_argument("--executor", choices=("ray", "local"), help="override executor.kind")

    lst = sub.add_parser("list", help="registered captioners, tasks, and the suites of the config")
    lst.add_argument("--config", default="bench.yaml")

    report = sub.add_parser("report", help="summary tables of a suite from its result files")
    report.add_argument("--suite", required=True)
    _add_config_args(report)

    latency = sub.add_parser("latency", help="per-image latency vs diffusion steps (optimized vs reference)")
    latency.add_argument("--model", default="ladic-base")
    latency.add_argument("--steps", default="1,5,10,30", help="comma-separated step counts")
    latency.add_argument("--device", default="cpu")
    latency.add_argument("--batch-size", type=int, default=1)
    latency.add_argument("--images", type=int, default=2, help="images timed per setting")
    latency.add_argument("--pretrained", action="store_true",
                         help="load the pretrained weights (default: random init, same architecture)")

    ui = sub.add_parser("ui", help="start the MLflow UI on the configured tracking store")
    _add_config_args(ui)
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--host", default="127.0.0.1")
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from bench.config import load_config
    from bench.suite import run_suite

    overrides = list(args.overrides)
    if args.executor:
        overrides.append(f"executor.kind={args.executor}")
    if args.address:
        overrides.append(f"executor.address={args.address}")
    cfg = load_config(args.config, overrides)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    results = run_suite(cfg, args.suite, force=args.force, only=only or None)
    failed = [r for r in results if r.get("status") != "ok"]
    if failed:
        print(f"{len(failed)} job(s) failed: " + ", ".join(r["label"] for r in failed), file=sys.stderr)
        return 1
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bench.registry import captioners, tasks

    print("captioners:")
    for e in captioners.entries():
        print(f"  {e.name:22s} {e.paradigm:15s} {e.description}")
    print("tasks:")
    for e in tasks.entries():
        print(f"  {e.name:22s} {e.description}")
    if Path(args.config).is_file():
        from bench.config import load_config

        cfg = load_config(args.config)
        print(f"suites ({args.config}):")
        for name, suite in cfg.suites.items():
            models = ", ".join(m.display for m in suite.models)
            print(f"  {name:22s} {suite.description} [{models}]")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.config import load_config
    from bench.plan import plan_suite
    from bench.results import collect, write_summary

    cfg = load_config(args.config, args.overrides)
    suite_dir = cfg.results_dir / args.suite
    keys = {job.key for job in plan_suite(cfg, args.suite)}
    results = collect(suite_dir, keys)
    if not results:
        print(f"no results for suite {args.suite!r} under {suite_dir}: run `bench run --suite {args.suite}`",
              file=sys.stderr)
        return 1
    print(write_summary(suite_dir, results))
    print(f"wrote {suite_dir / 'summary.csv'} and {suite_dir / 'summary.md'}")
    return 0


def cmd_latency(args: argparse.Namespace) -> int:
    from models.ladic.benchmark import compare_latency, format_table

    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    rows = compare_latency(args.model, steps, args.device, batch_size=args.batch_size,
                           n_images=args.images, pretrained=args.pretrained)
    print(format_table(rows))
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    import os

    from bench.config import load_config
    from bench.tracking import resolve_uri

    cfg = load_config(args.config, args.overrides)
    uri = resolve_uri(cfg.tracking.uri, cfg.results_dir.resolve())
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", args.host, "--port", str(args.port)]
    print(f"MLflow UI for {uri} at http://{args.host}:{args.port}", flush=True)
    os.execv(sys.executable, command)
    return 0  # not reached


COMMANDS = {"run": cmd_run, "list": cmd_list, "report": cmd_report, "latency": cmd_latency, "ui": cmd_ui}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from bench.errors import USER_ERRORS

    try:
        return COMMANDS[args.command](args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
