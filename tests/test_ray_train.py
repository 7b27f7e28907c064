"""Data-parallel jobs: 2 Ray Train workers (CPU, gloo) train and score exactly like 1 process."""

from pathlib import Path

import pytest
import torch

from bench.config import ConfigError, load_config
from bench.plan import plan_suite
from bench.results import read_json
from bench.suite import run_suite

SUITE = """
executor: {{kind: {executor}}}
tracking: {{kind: none}}
suites:
  mini:
    tasks: [shapes]
    phases: [train, eval]
    resources: {resources}
    # 7 does not divide 200 pairs nor split evenly over 2 ranks: uneven shards and a short last batch.
    train: {{epochs: 4, batch_size: 7, lr: 3.0e-3, warmup: 0.2}}
    eval: {{batch_size: 4, bootstrap: 20}}
    models: [vit-gpt2-tiny]
"""


def test_workers_default_to_one_per_gpu_and_plan_into_jobs(write_config):
    cfg = load_config(write_config(SUITE.format(executor="local", resources="{cpus: 2, workers: 2}")))
    one = load_config(write_config(SUITE.format(executor="local", resources="{cpus: 1}")))
    (job,), (single,) = plan_suite(cfg, "mini"), plan_suite(one, "mini")
    assert job.workers == 2 and single.workers == 1
    assert job.key == single.key  # the worker count does not change the result, so not the identity
    gpus = load_config(write_config(SUITE.format(executor="local", resources="{cpus: 8, gpus: 4}")))
    assert plan_suite(gpus, "mini")[0].workers == 4


@pytest.mark.parametrize("resources, expected", [
    ("{gpus: 2, workers: 3}", ["suites.mini.resources", "workers 3 with gpus 2", "accepted: workers = gpus"]),
    ("{gpus: 2.5}", ["suites.mini.resources", "gpus 2.5", "whole number"]),
    ("{workers: 0}", ["suites.mini.resources.workers", "greater than or equal to 1"]),
])
def test_bad_worker_settings_name_the_key(write_config, resources, expected):
    with pytest.raises(ConfigError) as err:
        load_config(write_config(SUITE.format(executor="local", resources=resources)))
    for text in expected:
        assert text in str(err.value)


def test_ranks_partition_each_global_batch():
    from bench.train_data import GlobalBatches

    def batches(rank: int, world: int) -> list[list[int]]:
        return list(GlobalBatches(23, 5, torch.Generator().manual_seed(3), rank, world))

    one = batches(0, 1)
    assert one == [list(b) for b in torch.randperm(23, generator=torch.Generator().manual_seed(3)).split(5)]
    for world in (2, 3, 7):
        shards = [batches(r, world) for r in range(world)]
        for b, whole in enumerate(one):
            assert sorted(i for s in shards for i in s[b]) == sorted(whole)


def test_resources_per_worker_are_checked_against_nodes():
    from dataclasses import replace

    from bench.executors.ray import RayExecutor

    job = _job(workers=2, cpus=4.0, gpus=2.0)
    executor = RayExecutor.__new__(RayExecutor)
    total = {"CPU": 8, "GPU": 2}
    executor.check_resources([job], total, [{"CPU": 4, "GPU": 1}, {"CPU": 4, "GPU": 1}])  # 1 GPU a node: fits
    with pytest.raises(ConfigError, match="each of its 2 workers needs 2 CPU"):
        executor.check_resources([job], total, [{"CPU": 1, "GPU": 2}, {"CPU": 7, "GPU": 0}])
    with pytest.raises(ConfigError, match="asks for 3 GPU"):
        executor.check_resources([replace(job, gpus=3.0, workers=3)], total)


def test_runner_imports_no_executor_and_leaves_data_parallel_to_the_executor(tmp_path):
    import ast

    import bench.runner
    from bench.executors import execute

    tree = ast.parse(Path(bench.runner.__file__).read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and m.startswith("bench.executors")]  # one way: executors -> runner

    # Run directly, a 2-worker job is refused (one process would silently do both workers' work).
    job = _job(workers=2, results_dir=str(tmp_path), phases=())
    result = bench.runner.run_job(job)
    assert result["status"] == "failed" and "2 workers" in result["error"]
    # The executor's entry point runs a single-process job in this process.
    assert execute(_job(model="constant", results_dir=str(tmp_path), phases=()))["status"] == "ok"


def _without_key_biases(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights with the attention key biases zeroed.

    A key bias adds the same q.b_k to every key's logit of a query, which softmax ignores: its true
    gradient is 0, so what it receives is float rounding, which Adam normalises into full-size steps.
    Any two float orderings (1 vs 2 ranks) walk it differently, and no output depends on it (the
    identical captions below show it).
    """
    out = dict(state)
    for name, value in state.items():
        width = value.shape[0]
        if name.endswith("attention.k_proj.bias"):  # ViT encoder
            key = slice(0, width)
        elif name.endswith("crossattention.c_attn.bias"):  # GPT-2 cross-attention: [key, value]
            key = slice(0, width // 2)
        elif name.endswith("attn.c_attn.bias"):  # GPT-2 self-attention: [query, key, value]
            key = slice(width // 3, 2 * width // 3)
        else:
            continue
        out[name] = value.clone()
        out[name][key] = 0
    return out


def _job(**fields):
    from bench.plan import Job

    base = dict(suite="s", model="vit-gpt2-tiny", label="m", task="shapes", task_class="shapes",
                task_options={}, seed=0, phases=("train",), overrides={}, train={}, eval={}, decoding={},
                sweep={}, latency={}, errprop={}, cpus=1.0, gpus=0.0, results_dir="/tmp/unused")
    return Job(**{**base, **fields})


@pytest.fixture(scope="module")
def ray_local():
    import ray

    # Logical CPUs: 2 training workers of 1 CPU each, with room to spare, even on a 2-core machine.
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.java
def test_two_ray_train_workers_match_one_process(write_config, tmp_path, ray_local):
    single_cfg = load_config(write_config(SUITE.format(executor="local", resources="{cpus: 1}")),
                             [f"results_dir={tmp_path / 'single'}"])
    single = run_suite(single_cfg, "mini", echo=lambda _: None)[0]
    cfg = load_config(write_config(SUITE.format(executor="ray", resources="{cpus: 2, workers: 2}")),
                      [f"results_dir={tmp_path / 'dp'}"])
    dp = run_suite(cfg, "mini", echo=lambda _: None)[0]
    assert single["status"] == "ok", single.get("traceback")
    assert dp["status"] == "ok", dp.get("traceback")
    assert single["workers"] == 1 and dp["workers"] == 2
    assert dp["job_id"] == single["job_id"]

    one_dir, two_dir = tmp_path / "single" / "mini" / single["job_id"], tmp_path / "dp" / "mini" / dp["job_id"]
    one_train, two_train = read_json(one_dir / "train.json"), read_json(two_dir / "train.json")
    for key in ("steps", "samples_seen", "epochs_done", "skipped_pairs"):
        assert one_train[key] == two_train[key], key
    assert two_train["epoch_losses"] == pytest.approx(one_train["epoch_losses"], rel=1e-5)

    one_weights = _without_key_biases(torch.load(one_dir / "model" / "weights.pt"))
    two_weights = _without_key_biases(torch.load(two_dir / "model" / "weights.pt"))
    for name, weight in one_weights.items():
        assert torch.allclose(weight, two_weights[name], rtol=1e-4, atol=1e-5), name

    assert read_json(two_dir / "captions.json") == read_json(one_dir / "captions.json")
    one_scores, two_scores = read_json(one_dir / "scores.json"), read_json(two_dir / "scores.json")
    assert one_scores["images_scored"] == two_scores["images_scored"] == 12  # every shard was gathered
    for metric, value in one_scores["corpus"].items():
        assert two_scores["corpus"][metric] == pytest.approx(value, abs=1e-6), metric
    assert two_scores["intervals"] == one_scores["intervals"]


def _rank_main(rank: int, workdir: str, shapes_root: str, crash_at: int | None, out: str) -> None:
    """One of 2 gloo ranks (spawned): train vit-gpt2-tiny as in test_train, maybe dying at a batch."""
    import torch.distributed as dist

    from bench.config import TrainConfig
    from bench.registry import create_captioner
    from bench.train import train
    from tasks.shapes import ShapesTask

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{workdir}/rendezvous-{crash_at}", rank=rank,
                            world_size=2)
    try:
        samples = ShapesTask(seed=1, train=40, val=6, test=12, root=shapes_root).samples("train")[:12]
        torch.manual_seed(rank)  # different inits on purpose: rank 0's is broadcast
        model = create_captioner("vit-gpt2-tiny")
        model.prepare(samples)
        if crash_at is not None:
            original, calls = model.training_loss, {"n": 0}

            def crash(batch):
                calls["n"] += 1
                if calls["n"] == crash_at:
                    raise RuntimeError("worker killed")
                return original(batch)

            model.training_loss = crash
        cfg = TrainConfig(epochs=2, batch_size=7, lr=1e-3, warmup=0.2)
        try:
            report = train(model, samples, cfg, Path(workdir) / "state", seed=5, log=lambda _: None)
        except RuntimeError:
            return
        torch.save({"weights": model.module.state_dict(), "report": report.to_dict()}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_resume_from_rank_0s_checkpoint_to_the_one_process_weights(tiny_shapes, tmp_path):
    import torch.multiprocessing as mp

    from bench.config import TrainConfig
    from bench.registry import create_captioner
    from bench.train import train

    samples = tiny_shapes.samples("train")[:12]  # 60 pairs -> 9 batches of 7 (the last 4) per epoch
    torch.manual_seed(0)
    single = create_captioner("vit-gpt2-tiny")
    single.prepare(samples)
    cfg = TrainConfig(epochs=2, batch_size=7, lr=1e-3, warmup=0.2)
    expected = train(single, samples, cfg, tmp_path / "single", seed=5, log=lambda _: None)

    # The same init as the single run on rank 0 (torch.manual_seed(0) in rank 0's process).
    workdir = str(tmp_path / "dp")
    Path(workdir).mkdir()
    out = str(tmp_path / "dp.pt")
    mp.spawn(_rank_main, args=(workdir, str(tiny_shapes.root.parent), 9 + 3, out), nprocs=2)  # both ranks die in epoch 2
    assert (Path(workdir) / "state" / "checkpoint.pt").is_file() and not Path(f"{out}.0").exists()
    mp.spawn(_rank_main, args=(workdir, str(tiny_shapes.root.parent), None, out), nprocs=2)
    result, other = torch.load(f"{out}.0"), torch.load(f"{out}.1")
    for name, weight in result["weights"].items():  # the ranks stay in lockstep, bit for bit
        assert torch.equal(weight, other["weights"][name]), name
    assert result["report"]["resumed_from_epoch"] == 1 and result["report"]["epochs_done"] == 2
    assert result["report"]["epoch_losses"] == pytest.approx(expected.epoch_losses, rel=1e-5)
    got, want = _without_key_biases(result["weights"]), _without_key_biases(single.module.state_dict())
    for name, weight in want.items():
        assert torch.allclose(weight, got[name], rtol=1e-4, atol=1e-5), name
