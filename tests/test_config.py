import subprocess
import sys

import pytest

from bench.config import ConfigError, apply_override, load_config, parse_override

SUITE = """
executor: {kind: local}
tracking: {kind: none}
suites:
  mini:
    tasks: [shapes]
    models: [constant, {name: vit-gpt2-tiny, train: {epochs: 1}}]
"""


def test_valid_config_loads_with_defaults(write_config):
    cfg = load_config(write_config(SUITE))
    suite = cfg.suite("mini")
    assert [m.name for m in suite.models] == ["constant", "vit-gpt2-tiny"]
    assert suite.seeds == [0] and suite.phases == ["train", "eval"]
    assert cfg.executor.kind == "local"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("executor.kind=lokal", ["executor.kind", "'ray' or 'local'", "lokal"]),
        ("suites.mini.train.epoch=3", ["suites.mini.train.epoch", "unknown key", "epochs", "batch_size"]),
        ("suites.mini.models.0.name=constnt", ["models.0.name", "did you mean 'constant'", "accepted:"]),
        ("suites.mini.tasks=[shapez]", ["tasks.0", "shapez", "shapes"]),
        ("suites.mini.train.lr=-1", ["suites.mini.train.lr", "greater than 0"]),
        ("suites.mini.models.1.train.batch_size=0", ["models.1.train.batch_size", "greater than or equal"]),
        ("suites.mini.phases=[train,score]", ["phases", "score"]),
    ],
)
def test_bad_values_name_file_key_and_accepted_values(write_config, override, expected):
    path = write_config(SUITE)
    with pytest.raises(ConfigError) as err:
        load_config(path, [override])
    message = str(err.value)
    assert str(path) in message
    for fragment in expected:
        assert fragment in message, (fragment, message)


def test_unknown_suite_suggests_the_close_name(write_config):
    cfg = load_config(write_config(SUITE))
    with pytest.raises(ConfigError, match="did you mean 'mini'"):
        cfg.suite("minu")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("suites: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_override_parsing_and_list_indices():
    keys, value = parse_override("suites.a.seeds=[0, 1]")
    assert keys == ["suites", "a", "seeds"] and value == [0, 1]
    data = {"suites": {"a": {"models": [{"name": "x"}]}}}
    apply_override(data, ["suites", "a", "models", "0", "name"], "y", "f")
    assert data["suites"]["a"]["models"][0]["name"] == "y"
    with pytest.raises(ConfigError, match="list index 0..0"):
        apply_override(data, ["suites", "a", "models", "3", "name"], "y", "f")
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override("executor.kind")


def test_cli_reports_config_errors_without_traceback(write_config):
    path = write_config(SUITE)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "--suite", "mini", "--config", str(path),
         "--set", "executor.kind=lokal"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "executor.kind" in proc.stderr and "Traceback" not in proc.stderr


def test_phase_seeds_limit_a_phase_to_some_seeds(write_config):
    from bench.plan import plan_suite

    path = write_config(SUITE)
    cfg = load_config(path, ["suites.mini.seeds=[0,1,2]", "suites.mini.phases=[train,eval,latency,errprop]",
                             "suites.mini.phase_seeds={latency: [0], errprop: [0, 2]}"])
    phases = {(j.model, j.seed): j.phases for j in plan_suite(cfg, "mini")}
    assert phases[("vit-gpt2-tiny", 0)] == ("train", "eval", "latency", "errprop")
    assert phases[("vit-gpt2-tiny", 1)] == ("train", "eval")
    assert phases[("vit-gpt2-tiny", 2)] == ("train", "eval", "errprop")
    for bad, words in (("{latency: [5]}", ["phase_seeds.latency", "[5]"]),
                       ("{train: [0]}", ["phase_seeds.train", "every seed trains"])):
        with pytest.raises(ConfigError) as err:
            load_config(path, ["suites.mini.seeds=[0,1,2]", f"suites.mini.phase_seeds={bad}"])
        assert all(w in str(err.value) for w in words), str(err.value)
