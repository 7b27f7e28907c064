"""SPICE (Anderson et al., 2016) through pycocoevalcap's jar, with the JVM options it needs today.

pycocoevalcap starts `java -jar spice-1.0.jar` with no JVM options and its error output on the
terminal. On Java 16+ SPICE then dies with `InaccessibleObjectException: Unable to make field private
final byte[] java.lang.String.value accessible` (its FST serialiser reflects into JDK internals), so this
module builds the command itself: the same jar, arguments and cache folder, plus `--add-opens` for the
packages FST reaches into when the JVM is Java 9 or newer (Java 8 rejects the flag and needs none), and
Java's error output kept for the reason recorded when SPICE fails. The locale comes from the caller's
`english_jvm()` (bench/metrics/quality.py), which every Java child runs under.
"""

from __future__ import annotations

import functools
import json
import math
import re
import subprocess
import tempfile
from pathlib import Path

#: Packages SPICE's FST serialiser reflects into; opened to the unnamed module on Java 9+.
ADD_OPENS = tuple(f"--add-opens=java.base/{package}=ALL-UNNAMED" for package in (
    "java.lang", "java.lang.reflect", "java.math", "java.util", "java.util.concurrent", "java.net",
    "java.text", "java.io", "java.nio"))
SPICE_JAR = "spice-1.0.jar"


class SpiceError(RuntimeError):
    """SPICE ran and failed; the message ends with the last lines of Java's error output."""


def spice_dir() -> Path:
    """pycocoevalcap's spice folder: the jar, lib/ (CoreNLP jars) and its parse cache."""
    import pycocoevalcap.spice as spice_pkg

    return Path(spice_pkg.__file__).parent


@functools.cache
def java_major(java: str = "java") -> int:
    """The major version of `java` (8 for "1.8.0_312", 17 for "17.0.15"); 0 when it cannot be told."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return 0
    return parse_java_major(out.stderr + out.stdout)


def parse_java_major(version_output: str) -> int:
    """The major version in `java -version` output: 8 for "1.8.0_312", 17 for "17.0.15"; 0 if none."""
    found = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not found:
        return 0
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def spice_command(in_file: Path, out_file: Path, cache_dir: Path, major: int) -> list[str]:
    """The SPICE command line of pycocoevalcap, with ADD_OPENS on Java 9+ (`major` from java_major)."""
    opens = list(ADD_OPENS) if major >= 9 else []
    return ["java", *opens, "-jar", "-Xmx8G", SPICE_JAR, str(in_file), "-cache", str(cache_dir),
            "-out", str(out_file), "-subset", "-silent"]


def spice_scores(gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float, list[float]]:
    """(mean F-score, per-image F-scores in the order of `res`) of PTB-tokenised texts.

    A per-image score SPICE leaves empty comes back as NaN (the caller decides what that means).
    Raises SpiceError with Java's own message when the process fails.
    """
    ids = list(res)
    folder = spice_dir()
    cache = folder / "cache"
    cache.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="spice-") as tmp:
        in_file, out_file = Path(tmp) / "input.json", Path(tmp) / "output.json"
        in_file.write_text(json.dumps([{"image_id": i, "test": res[i][0], "refs": gts[i]} for i in ids]))
        command = spice_command(in_file, out_file, cache, java_major())
        done = _run_java(command, folder)
        if done.returncode != 0:
            tail = " | ".join(line.strip() for line in done.stderr.strip().splitlines()[-6:])
            raise SpiceError(f"java exited with status {done.returncode}: {tail or '(no error output)'}")
        results = json.loads(out_file.read_text())
    by_id = {str(item["image_id"]): item["scores"]["All"]["f"] for item in results}
    scores = [_number(by_id.get(str(i))) for i in ids]
    return (sum(scores) / len(scores) if scores else math.nan), scores


def _run_java(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
