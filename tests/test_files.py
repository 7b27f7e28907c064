"""Result file names (bench/files.py) and the metric list (bench/metrics/quality.py) are defined once:
no other harness module spells them out, and the metric views keep METRICS' names and order."""

from __future__ import annotations

import ast
from pathlib import Path

import bench
from bench import files
from bench.metrics import quality

BENCH = Path(bench.__file__).parent
FILE_NAMES = {value: name for name, value in vars(files).items() if name.isupper() and isinstance(value, str)}


def _code_strings(tree: ast.AST) -> list[ast.Constant]:
    """String constants that are code, not docstrings."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [node for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and id(node) not in docstrings]


def _modules(*skip: Path) -> list[tuple[Path, ast.AST]]:
    return [(path, ast.parse(path.read_text())) for path in sorted(BENCH.rglob("*.py")) if path not in skip]


def test_no_module_spells_a_result_file_name():
    found = [f"{path.relative_to(BENCH.parent)}:{node.lineno}: {node.value!r} -> bench.files."
             f"{FILE_NAMES[node.value]}"
             for path, tree in _modules(BENCH / "files.py") for node in _code_strings(tree)
             if node.value in FILE_NAMES]
    assert not found, "\n".join(found)


def test_no_module_lists_metric_names():
    metrics = set(quality.METRICS)
    found = [f"{path.relative_to(BENCH.parent)}:{node.lineno}"
             for path, tree in _modules(BENCH / "metrics" / "quality.py") for node in ast.walk(tree)
             if isinstance(node, ast.Tuple | ast.List | ast.Set) and len(node.elts) > 1
             and all(isinstance(e, ast.Constant) and e.value in metrics for e in node.elts)]
    assert not found, "metric lists outside bench/metrics/quality.py: " + ", ".join(found)


def test_metric_views_are_in_metrics_order():
    views = {name: value for name, value in vars(quality).items()
             if name.endswith("_METRICS") and isinstance(value, tuple)}
    assert {"TABLE_METRICS", "SUMMARY_METRICS", "INTERVAL_METRICS", "SWEEP_METRICS", "BLEU_METRICS"} <= set(views)
    for name, view in views.items():
        assert set(view) <= set(quality.METRICS) and len(set(view)) == len(view), name
        if name != "ERRPROP_METRICS":  # errprop shows its headline (CIDEr) first
            assert [m for m in quality.METRICS if m in view] == list(view), name
    assert quality.BLEU_METRICS == ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4")  # indexed by n-gram order
    assert "CIDEr" in quality.SWEEP_METRICS and "SPICE" not in quality.INTERVAL_METRICS
