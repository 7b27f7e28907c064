"""The committed dependency lock (requirements.lock, bench/lockfile.py) agrees with pyproject.toml."""

from __future__ import annotations

import json

from bench import lockfile


def test_lock_matches_pyproject():
    assert lockfile.check_pyproject() == [], "requirements.lock is out of date: run `make lock`"


def test_every_lock_entry_is_pinned_with_a_hash_and_torch_is_the_cpu_build():
    text = lockfile.LOCK.read_text()
    pins = lockfile.pins(text)
    assert pins["torch"].endswith("+cpu")
    blocks = [b for b in text.split("\n") if lockfile._PIN.match(b)]
    assert len(blocks) == len(pins) > 50
    assert text.count("--hash=sha256:") >= len(pins)


def test_a_dependency_added_to_pyproject_is_found(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    # a package the lock does not hold (the lock's own list is checked first, so the test stays meaningful)
    assert "tomli-w==" not in lockfile.LOCK.read_text()
    pyproject.write_text(lockfile.PYPROJECT.read_text().replace('"pyyaml>=6",', '"pyyaml>=6", "tomli-w>=1.0",'))
    problems = lockfile.check_pyproject(lockfile.LOCK, pyproject)
    assert any("tomli-w" in p for p in problems)
    assert any("other dependencies" in p for p in problems)


def test_a_lock_for_another_platform_says_so_in_one_line(tmp_path):
    made = {**lockfile.this_platform(), "python": "2.7", "pyproject": "x"}
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"# bench-lock: {json.dumps(made)}\nsix==1.0 \\\n    --hash=sha256:00\n")
    reason = lockfile.check_platform(lock)
    assert reason is not None and "python 2.7" in reason and "\n" not in reason
    lock.write_text(f"# bench-lock: {json.dumps(lockfile.this_platform())}\n")
    assert lockfile.check_platform(lock) is None


def test_installed_packages_are_compared_with_the_lock(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("pyyaml==0.0.1 \\\n    --hash=sha256:00\n")
    out = lockfile.installed_vs_lock(lock)
    assert len(out["lock"]) == 16
    assert "(lock 0.0.1)" in out["differs"]["pyyaml"]
    assert "not in lock" in out["differs"]["torch"]
