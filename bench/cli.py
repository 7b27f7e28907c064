"""`bench`: the command line. Imports stay inside the commands, so `bench --help` is instant."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

EXAMPLES = """examples:
  bench run --suite shapes                  the offline default suite (CPU, minutes)
  bench run --suite coco --address auto     on a running Ray cluster
  bench run --suite shapes --set executor.kind=local --set suites.shapes.seeds=[0,1]
  bench list                                captioners, tasks and suites
  bench report --suite shapes               paper tables and figures from the result files
  bench data check --task coco              verify a dataset's files and counts
  bench ui                                  MLflow UI on the configured store
  bench track --suite shapes                mirror into MLflow the results it lacks
  bench score --suite coco --task coco --label LaViDa --paradigm diffusion samples.jsonl
  bench reproduce results/shapes/<job_id>   rerun a finished job, compare every metric and caption
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
    run.add_argument("--verbose", action="store_true",
                     help="show Ray workers' output on the console (it always goes to each job's log.txt)")

    lst = sub.add_parser("list", help="registered captioners, tasks, and the suites of the config")
    lst.add_argument("--config", default="bench.yaml")

    report = sub.add_parser("report", help="paper tables and figures of a suite from its result files")
    report.add_argument("--suite", required=True)
    report.add_argument("--format", default="md,tex,csv", help="comma list of md, tex, csv")
    report.add_argument("--out", help="write the summary and report here (default: the suite's folder and "
                                      "its report/); for a suite folder you cannot write")
    _add_config_args(report)

    data = sub.add_parser("data", help="check or arrange dataset files (coco, flickr30k, Karpathy-format)")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    check = data_sub.add_parser(
        "check", help="verify split file, counts per split and images; say where files are published")
    check.add_argument("--task", required=True, help="coco, flickr30k, or a task of bench.yaml's tasks:")
    check.add_argument("--config", default="bench.yaml", help="read tasks.<name> from here if it exists")
    check.add_argument("--root", help="dataset root (overrides bench.yaml, COCO_ROOT / FLICKR30K_ROOT)")
    check.add_argument("--split-file", help="a Karpathy dataset_*.json (for type: karpathy sets)")
    check.add_argument("--image-root", help="folder the split file's image paths are relative to")
    depth = check.add_mutually_exclusive_group()
    depth.add_argument("--quick", dest="level", action="store_const", const="exists",
                       help="check that image files exist; open none (seconds)")
    depth.add_argument("--deep", dest="level", action="store_const", const="decode",
                       help="decode every image: finds truncated JPEGs (minutes for COCO)")
    check.set_defaults(level="header")
    check.add_argument("--workers", type=int, help="threads reading images (default: 2 per CPU, <= 16)")
    check.add_argument("--show", type=int, default=5, help="missing/unreadable images listed (default 5)")
    prep = data_sub.add_parser("prepare", help="arrange downloaded archives or folders into the layout")
    prep.add_argument("--task", required=True, help="coco or flickr30k")
    prep.add_argument("--root", help="target root (default: bench.yaml's tasks.<name>.root, then "
                                     "COCO_ROOT / FLICKR30K_ROOT)")
    prep.add_argument("--config", default="bench.yaml")
    prep.add_argument("--mode", choices=("symlink", "copy", "move"), default="symlink",
                      help="for folders and plain files (archives are always extracted)")
    prep.add_argument("sources", nargs="+", metavar="ARCHIVE_OR_FOLDER",
                      help="e.g. caption_datasets.zip train2014.zip val2014.zip")

    latency = sub.add_parser("latency", help="per-image latency vs diffusion steps (optimized vs reference)")
    latency.add_argument("--model", default="ladic-base")
    latency.add_argument("--steps", default="1,5,10,30", help="comma-separated step counts")
    latency.add_argument("--device", default="cpu")
    latency.add_argument("--batch-size", type=int, default=1)
    latency.add_argument("--images", type=int, default=2, help="images timed per setting")
    latency.add_argument("--pretrained", action="store_true",
                         help="load the pretrained weights (default: random init, same architecture)")
    latency.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32",
                         help="weights' dtype (bf16: converted weights; sampler state and noise stay fp32)")
    latency.add_argument("--stack", choices=("eager", "compiled", "graph"), default="eager",
                         help="inference stack (one the model declares; compiled: torch.compile of its passes)")

    # Listed here for `bench --help`; main() hands its arguments to bench/device_check.py untouched.
    sub.add_parser("device-check", add_help=False,
                   help="latency, throughput and training cost of every model at real size (GPU); "
                        "--tiny on a CPU; `bench device-check --help` for its options")

    track = sub.add_parser("track", help="mirror into MLflow every result of a suite that the store lacks")
    track.add_argument("--suite", required=True)
    _add_config_args(track)

    score = sub.add_parser("score", help="score caption files made elsewhere (COCO results, lmms-eval logs) "
                                         "as rows of a suite")
    score.add_argument("files", nargs="+", type=Path, metavar="FILE", help="one file per seed of one model")
    score.add_argument("--suite", required=True)
    score.add_argument("--task", required=True, help="task the captions are of (coco, flickr30k, nocaps, ...)")
    score.add_argument("--split", default="test")
    score.add_argument("--label", required=True, help="the model's name in tables")
    score.add_argument("--paradigm", required=True, help="declared paradigm, e.g. diffusion, autoregressive")
    score.add_argument("--seed", dest="seeds", type=int, action="append", help="seed of each file, in order")
    score.add_argument("--pretraining", default="unknown", help="pre-training data, for the tables")
    score.add_argument("--clip", default="openai/clip-vit-base-patch32",
                       help="CLIP hub id or local directory for CLIPScore ('none' skips it)")
    score.add_argument("--instances", type=Path, action="append", default=[],
                       help="COCO instances_*.json for CHAIR (repeatable: train2014 and val2014)")
    score.add_argument("--bootstrap", type=int, default=1000, help="resamples of the intervals over images")
    _add_config_args(score)

    rep = sub.add_parser("reproduce", help="rerun finished jobs in a scratch folder and compare every "
                                           "metric and caption (exit 1 when anything differs)")
    rep.add_argument("job_dir", nargs="?", help="a job's folder, e.g. results/shapes/<job_id>")
    rep.add_argument("--suite", help="instead: a sample of this suite's finished jobs")
    rep.add_argument("--jobs", type=int, default=3, help="jobs sampled with --suite (default 3)")
    _add_config_args(rep)

    ui = sub.add_parser("ui", help="start the MLflow UI on the configured tracking store")
    _add_config_args(ui)
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--suite", help="print the link of this suite only (default: every suite with runs)")
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from bench.config import load_config
    from bench.suite import run_suite
    from bench.validate import validate_suite

    overrides = list(args.overrides)
    if args.verbose:
        import os

        os.environ["BENCH_VERBOSE"] = "1"  # read by the Ray executor (bench/executors/ray.py)
    if args.executor:
        overrides.append(f"executor.kind={args.executor}")
    if args.address:
        overrides.append(f"executor.address={args.address}")
    cfg = load_config(args.config, overrides)
    from bench.numerics import apply

    apply(cfg.numerics)  # kernel paths fixed before anything imports torch (bench/numerics.py)
    validate_suite(cfg, args.suite)  # knobs, overrides, task options, data, results_dir: before any work
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    results = run_suite(cfg, args.suite, force=args.force, only=only or None)
    if cfg.tracking.kind == "mlflow":  # where the comparison opens (bench/mlflow_view.py)
        from bench.mlflow_view import run_end_links
        from bench.tracking import resolve_uri

        uri = resolve_uri(cfg.tracking.uri, cfg.results_dir.resolve())
        for line in run_end_links(uri, cfg.tracking.experiment.format(suite=args.suite)):
            print(line)
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
    from pathlib import Path

    from bench.config import load_config
    from bench.plan import plan_suite
    from bench.results import collect, write_summary
    from bench.validate import validate_suite

    cfg = load_config(args.config, args.overrides)
    validate_suite(cfg, args.suite, data=False, create_results=False)  # reads result files, not the dataset
    suite_dir = cfg.results_dir / args.suite
    keys = {job.key for job in plan_suite(cfg, args.suite)}
    from bench.score import scored_results  # caption files scored with `bench score` join as rows

    results = collect(suite_dir, keys) + scored_results(suite_dir)
    if not results:
        print(f"no results for suite {args.suite!r} under {suite_dir}: run `bench run --suite {args.suite}`",
              file=sys.stderr)
        return 1
    from bench.derived import damaged, discard, job_set, record, report_files

    bad = {r.get("job_id"): names for r in results if (names := damaged(suite_dir / str(r.get("job_id")), r))}
    if bad:  # a report from changed or truncated files would publish numbers no job produced
        for job_id, names in bad.items():
            print(f"error: {suite_dir / str(job_id)}: {', '.join(names)} unreadable or changed since the job "
                  f"wrote it", file=sys.stderr)
        print(f"no report written: `bench run --suite {args.suite}` redoes these jobs", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else None
    try:
        write_summary(out or suite_dir, results)
    except OSError as err:
        print(f"error: cannot write the summary under {out or suite_dir}: {err.strerror or err}; pass --out DIR "
              f"to write the report elsewhere", file=sys.stderr)
        return 2
    try:
        from bench.compare import compare_suite

        made = compare_suite(suite_dir, results, primary=cfg.suites[args.suite].compare.primary)
        if out is None:
            record(suite_dir, [p.name for p in made], job_set(suite_dir, results))
    except Exception as err:  # noqa: BLE001 - the tables can still be made from the result files
        if out is None:
            discard(suite_dir)  # no comparisons of another job set survive a failure
        print(f"warning: paired comparisons not written: {type(err).__name__}: {err}", file=sys.stderr)
    from bench.report import build_report, main_table_markdown

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    if out is None:
        discard(suite_dir, report_files(suite_dir))
    try:
        paths = build_report(suite_dir, results, formats, out_dir=out,
                             verdict_models=cfg.suite(args.suite).verdict_models)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if out is None:
        record(suite_dir, [str(p.relative_to(suite_dir)) for p in paths], job_set(suite_dir, results))
    if "md" in formats:
        print(main_table_markdown(paths))
    print(f"wrote {len(paths)} report file(s) under {out or suite_dir / 'report'}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    if args.data_command == "check":
        from tasks import checks

        task = checks.resolve_task(args.task, args.config, root=args.root, split_file=args.split_file,
                                   image_root=args.image_root)
        progress = checks.stderr_progress if sys.stderr.isatty() else None
        report = checks.check_task(task, level=args.level, workers=args.workers, progress=progress)
        print(checks.format_check(report, show=args.show))
        return report.exit_code
    from tasks import prepare

    report = prepare.prepare(args.task, args.root, args.sources, mode=args.mode, config=args.config,
                             echo=print)
    print(prepare.format_prepare(report))
    return report.exit_code


def cmd_latency(args: argparse.Namespace) -> int:
    from models.ladic.benchmark import compare_latency, format_table

    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    rows = compare_latency(args.model, steps, args.device, batch_size=args.batch_size,
                           n_images=args.images, pretrained=args.pretrained, dtype=args.dtype, stack=args.stack)
    print(format_table(rows))
    return 0


def cmd_track(args: argparse.Namespace) -> int:
    from bench.config import load_config
    from bench.suite import track_suite

    cfg = load_config(args.config, args.overrides)
    counts = track_suite(cfg, args.suite)
    if counts["problem"]:
        print(f"error: tracking failed after {counts['mirrored']} result(s) were mirrored: {counts['problem']}",
              file=sys.stderr)
        return 1
    print(f"suite {args.suite}: {counts['mirrored']} result(s) mirrored now, {counts['present']} already in "
          f"MLflow, {counts['missing']} job(s) without a result")
    return 0


def port_in_use(host: str, port: int) -> bool:
    """Whether `host:port` cannot be bound now (another server holds it)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: a closing socket is no owner
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def cmd_ui(args: argparse.Namespace) -> int:
    import os

    from bench.config import load_config
    from bench.tracking import resolve_uri

    cfg = load_config(args.config, args.overrides)
    uri = resolve_uri(cfg.tracking.uri, cfg.results_dir.resolve())
    if port_in_use(args.host, args.port):
        print(f"error: port {args.port} is in use; pass --port (e.g. --port {args.port + 1})", file=sys.stderr)
        return 2
    from bench.mlflow_view import ui_links

    host = f"[{args.host}]" if ":" in args.host else args.host
    links = ui_links(uri, cfg.tracking.experiment, list(cfg.suites), f"http://{host}:{args.port}", args.suite)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", args.host, "--port", str(args.port)]
    print(f"MLflow UI for {uri} at http://{args.host}:{args.port}; each suite opens on its comparison at:")
    print("\n".join(links), flush=True)
    os.execv(sys.executable, command)
    return 0  # not reached


def cmd_score(args: argparse.Namespace) -> int:
    from bench.score import score_command

    return score_command(args)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from bench.reproduce import reproduce_command

    return reproduce_command(args)


COMMANDS = {"score": cmd_score, "reproduce": cmd_reproduce, "run": cmd_run, "list": cmd_list,
            "report": cmd_report, "data": cmd_data, "latency": cmd_latency, "ui": cmd_ui, "track": cmd_track}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["device-check"]:  # its own options (and --help), parsed by bench/device_check.py
        from bench.device_check import main as device_check

        return device_check(argv[1:])
    args = build_parser().parse_args(argv)
    from bench.derived import set_invocation

    set_invocation(argv)  # derived files name the command that made them
    from bench.errors import USER_ERRORS
    from bench.lock import SuiteBusy
    from bench.signals import handle_sigterm

    handle_sigterm()  # a scheduler's SIGTERM stops a command as Ctrl-C does (bench/signals.py)
    try:
        return COMMANDS[args.command](args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except SuiteBusy as err:  # not a config error: the same command works once the other run ends
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        from bench.signals import exit_code

        print("interrupted", file=sys.stderr)
        return exit_code(err)


if __name__ == "__main__":
    sys.exit(main())
