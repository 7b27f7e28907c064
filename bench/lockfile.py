"""The committed dependency lock (requirements.lock): every package of the CPU install, pinned with hashes.

`make lock` writes it (uv pip compile from pyproject.toml, torch pinned to the CPU build) and stamps its
header with the digest of pyproject.toml's dependency lists, so a lock that no longer matches the project
is found (`check_pyproject`, a test). `make install` checks the platform first (`python -m bench.lockfile
platform`): a lock made for CPython 3.11 on x86-64 Linux says so on another platform instead of ending in
pip's traceback. Results record the lock's digest and every installed package that differs from it
(`installed_vs_lock`). Standard library only: this runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import sys
from functools import lru_cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCK = REPO_ROOT / "requirements.lock"
PYPROJECT = REPO_ROOT / "pyproject.toml"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")
_STAMP = re.compile(r"^# bench-lock: (\{.*\})$", re.M)


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    """name -> pinned version of every requirement line of a lock."""
    out = {}
    for line in text.splitlines():
        m = _PIN.match(line.strip())
        if m:
            out[canonical(m.group(1))] = m.group(3)
    return out


def stamp(text: str) -> dict[str, str]:
    """The header `make lock` writes: platform and pyproject digest it was made for ({} if absent)."""
    m = _STAMP.search(text)
    return json.loads(m.group(1)) if m else {}


def dependency_lists(pyproject_text: str) -> list[str]:
    """The requirement strings of [project] dependencies and optional-dependencies, as written."""
    import tomllib

    project = tomllib.loads(pyproject_text).get("project", {})
    reqs = list(project.get("dependencies", []))
    for group, items in sorted(project.get("optional-dependencies", {}).items()):
        reqs += [f"[{group}] {r}" for r in items]
    return reqs


def pyproject_digest(pyproject_text: str) -> str:
    return hashlib.sha256("\n".join(dependency_lists(pyproject_text)).encode()).hexdigest()[:16]


def this_platform() -> dict[str, str]:
    return {"python": f"{sys.version_info.major}.{sys.version_info.minor}",
            "machine": platform.machine(), "system": platform.system()}


def make_stamp(pyproject: Path = PYPROJECT) -> str:
    """The header line for a lock made now from `pyproject`."""
    data = {**this_platform(), "pyproject": pyproject_digest(pyproject.read_text())}
    return f"# bench-lock: {json.dumps(data, sort_keys=True)}"


def check_pyproject(lock: Path = LOCK, pyproject: Path = PYPROJECT) -> list[str]:
    """Why the lock does not match pyproject.toml (empty when it does)."""
    text = lock.read_text()
    problems = []
    if stamp(text).get("pyproject") != pyproject_digest(pyproject.read_text()):
        problems.append(f"{lock.name} was made from other dependencies than {pyproject.name} lists now")
    locked = pins(text)
    for req in dependency_lists(pyproject.read_text()):
        name = canonical(re.split(r"[\s\[<>=!~;]", req.split("] ", 1)[-1], maxsplit=1)[0])
        if name not in locked:
            problems.append(f"{pyproject.name} requires {req.split('] ', 1)[-1]!r}; {lock.name} has no {name}")
    return problems


def check_platform(lock: Path = LOCK) -> str | None:
    """A one-line reason the lock cannot install here, else None."""
    made_for = stamp(lock.read_text())
    here = this_platform()
    differs = [f"{k} {made_for[k]} (here: {here[k]})" for k in ("system", "machine", "python")
               if k in made_for and made_for[k] != here[k]]
    if not differs:
        return None
    return (f"{lock.name} was made for " + ", ".join(differs) + "; run `make lock` on this platform "
            "(or use Python " + made_for.get("python", "?") + ")")


@lru_cache(maxsize=1)
def installed_vs_lock(lock: Path = LOCK) -> dict[str, object]:
    """The lock's digest and every installed distribution whose version differs from it or is absent."""
    from importlib import metadata

    if not lock.is_file():
        return {"lock": "absent", "differs": {}}
    text = lock.read_text()
    locked = pins(text)
    installed = {canonical(d.metadata["Name"] or ""): d.version for d in metadata.distributions()}
    differs = {name: f"{installed.get(name, 'absent')} (lock {version})"
               for name, version in sorted(locked.items()) if installed.get(name) != version}
    for name in sorted(set(installed) - set(locked) - {"diffcap-bench", "pip", "setuptools", "uv", ""}):
        differs[name] = f"{installed[name]} (not in lock)"
    return {"lock": hashlib.sha256(text.encode()).hexdigest()[:16], "differs": differs}


def main(argv: list[str]) -> int:
    """`python -m bench.lockfile platform|check|stamp`: install-time checks and `make lock`'s header."""
    command = argv[0] if argv else "check"
    if command == "stamp":
        print(make_stamp())
        return 0
    if command == "platform":
        reason = check_platform()
        if reason:
            print(f"error: {reason}", file=sys.stderr)
            return 2
        return 0
    problems = check_pyproject()
    for p in problems:
        print(f"error: {p}; run `make lock`", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
