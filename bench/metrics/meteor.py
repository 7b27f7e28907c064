"""METEOR statistics from pycocoevalcap's METEOR 1.5 jar, for exact resampling of corpus METEOR.

pycocoevalcap's corpus METEOR is not a mean of per-image scores: the jar aligns each caption with its
references into a line of statistics (lengths, matches per stage, chunks, ...), and `EVAL` scores the sum
of the lines it is given. Those lines add up, so the METEOR of any multiset of images is the score of the
count-weighted sum of its images' lines: a bootstrap resample is scored exactly, with no rerun of the
alignments. The jar's stdio protocol (as pycocoevalcap drives it):

  SCORE ||| ref 1 ||| ... ||| ref n ||| hypothesis   ->  one statistics line
  EVAL ||| stats 1 ||| ... ||| stats k                ->  k lines (each line's own score), then the score
                                                          of their sum

One exception to plain addition, copied from the jar's `MeteorStats.addStats`: a segment whose words all
match in a single chunk adds no chunks to an aggregate (its own fragmentation penalty is 0). `stats`
returns such lines with their chunk count set to 0, which scores the same on its own and makes every
sum of lines equal to the jar's aggregate. `MeteorJar.score` sends many summed lines as the segments of one `EVAL` and reads each segment's score:
a segment's score is computed from its statistics exactly as the aggregate is (checked by the tests
against `Meteor().compute_score` on resampled sets). One JVM serves a whole bootstrap.

Starting the jar costs about 5 s of CPU (it loads a 62 MB paraphrase table) and 1 GB of memory, so a
process keeps one started jar between scorings (`pooled_meteor`): the jobs a Ray worker runs one after
another, and `bench score`'s scoring then its bootstrap, share it. The jar is stateless between requests
(each SCORE and EVAL line is answered from that line alone), so sharing it changes no score. A jar that
died is replaced, one that failed mid-request is closed rather than pooled (its pipe may be out of step),
and the pooled one is closed after `IDLE_SECONDS` unused and at exit.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from bench.metrics.quality import english_jvm, java_missing_reason

IDLE_SECONDS = 600.0  # a pooled jar unused this long is closed (its 1 GB back)
BATCH = 4000  # summed lines per EVAL request (bounds the request line at a few hundred kB)
# Fields of a statistics line (METEOR 1.5, MAX_MODULES = 4): test length, reference length, test and
# reference function words, then per module (test content, reference content, test function, reference
# function) matches, then chunks, test word matches, reference word matches.
_MODULES = 4
_CHUNKS = 4 + 4 * _MODULES


def summable(line: Sequence[float]) -> list[float]:
    """A statistics line as the jar adds it into an aggregate (a perfect one-chunk match adds no chunks)."""
    values = [float(x) for x in line]
    if len(values) != _CHUNKS + 3:
        raise ValueError(f"a METEOR statistics line has {_CHUNKS + 3} fields, got {len(values)}: {line!r}")
    test = sum(values[4 + 4 * k] + values[6 + 4 * k] for k in range(_MODULES))
    ref = sum(values[5 + 4 * k] + values[7 + 4 * k] for k in range(_MODULES))
    if test == values[0] and ref == values[1] and values[_CHUNKS] == 1.0:
        values[_CHUNKS] = 0.0
    return values


_pool: dict[str, Any] = {"meteor": None, "timer": None}
_pool_lock = threading.Lock()


def _start() -> Any:
    reason = java_missing_reason()
    if reason:
        raise RuntimeError(f"METEOR needs Java: {reason}")
    from pycocoevalcap.meteor.meteor import Meteor

    with english_jvm():  # the child inherits the locale at start: numbers cross the pipe as text
        return Meteor()


def _close(meteor: Any) -> None:
    # Meteor.compute_score leaves its lock held when a request fails, and Meteor.__del__ takes that lock:
    # released here, so collecting a failed jar cannot hang.
    if meteor.lock.locked():
        meteor.lock.release()
    process = meteor.meteor_p
    if process.poll() is None:
        process.kill()
    process.wait()
    for pipe in (process.stdin, process.stdout, process.stderr):
        pipe.close()


def _pop() -> Any:
    """The pooled jar (None if none), out of the pool, its idle timer stopped."""
    with _pool_lock:
        meteor, _pool["meteor"] = _pool["meteor"], None
        if _pool["timer"] is not None:
            _pool["timer"].cancel()
    return meteor


def _take() -> Any:
    """The pooled jar if it is still running, else a new one."""
    meteor = _pop()
    if meteor is not None:
        if meteor.meteor_p.poll() is None:
            return meteor
        _close(meteor)  # died while pooled (a signal to the process group): its pipes closed here
    return _start()


def _put_back(meteor: Any) -> None:
    """Pool `meteor` (a timer closes it after IDLE_SECONDS unused), or close it when another is pooled."""
    with _pool_lock:
        if _pool["meteor"] is None and meteor.meteor_p.poll() is None:
            _pool["meteor"] = meteor
            _pool["timer"] = threading.Timer(IDLE_SECONDS, _close_idle, args=(meteor,))
            _pool["timer"].daemon = True
            _pool["timer"].start()
            return
    _close(meteor)


def _close_idle(meteor: Any) -> None:
    with _pool_lock:
        if _pool["meteor"] is not meteor:
            return  # taken again since
        _pool["meteor"] = None
    _close(meteor)


def close_pool() -> None:
    """Close the pooled jar now, if any (the next scoring starts a new one)."""
    meteor = _pop()
    if meteor is not None:
        _close(meteor)


atexit.register(close_pool)


@contextmanager
def pooled_meteor() -> Iterator[Any]:
    """A running pycocoevalcap `Meteor` for the duration: the process's pooled jar when it has one.

    The jar goes back to the pool when the block ends normally; after an exception it is closed, since a
    request may have been left half answered.
    """
    meteor = _take()
    try:
        yield meteor
    except BaseException:
        _close(meteor)
        raise
    _put_back(meteor)


class MeteorJar:
    """A METEOR 1.5 process (pycocoevalcap's jar, options and text normalisation) for statistics and
    their scores; a context manager over `pooled_meteor`."""

    def __enter__(self) -> MeteorJar:
        self._context = pooled_meteor()
        self._meteor = self._context.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        context, self._context, self._meteor = self._context, None, None
        context.__exit__(*exc)

    def _readline(self) -> str:
        line = self._meteor.meteor_p.stdout.readline().decode().strip()
        if not line:
            error = self._meteor.meteor_p.stderr.read1(4000).decode(errors="replace") if self._exited() else ""
            raise RuntimeError(f"the METEOR jar stopped answering{': ' + error if error else ''}")
        return line

    def _exited(self) -> bool:
        return self._meteor.meteor_p.poll() is not None

    def stats(self, gts: Mapping[str, Sequence[str]], res: Mapping[str, Sequence[str]]) -> dict[str, list[float]]:
        """Per-image `summable` statistics lines of PTB-tokenised `res` (image_id -> [caption]) against `gts`."""
        out = {}
        for i, caption in res.items():
            if len(caption) != 1:
                raise ValueError(f"image {i}: METEOR needs exactly one caption, got {len(caption)}")
            # The same call (and hypothesis clean-up) as Meteor.compute_score makes for each image.
            line = self._meteor._stat(caption[0], gts[i])
            try:
                out[i] = summable(line.split())
            except ValueError:
                raise RuntimeError(f"image {i}: the METEOR jar answered {line[:200]!r}") from None
        return out

    def score(self, stats: np.ndarray) -> np.ndarray:
        """METEOR of each row of `stats` (N, K): a row is a sum of statistics lines, e.g. one resample's."""
        stats = np.atleast_2d(np.asarray(stats, float))
        scores = []
        for start in range(0, len(stats), BATCH):
            rows = stats[start:start + BATCH]
            # repr keeps every digit, so the jar reads back exactly the float64 sum.
            request = "EVAL ||| " + " ||| ".join(" ".join(repr(float(x)) for x in row) for row in rows)
            self._meteor.meteor_p.stdin.write((request + "\n").encode())
            self._meteor.meteor_p.stdin.flush()
            scores += [float(self._readline()) for _ in range(len(rows))]
            self._readline()  # the score of the sum of this batch: not needed
        return np.array(scores)


def meteor_stats(gts: Mapping[str, Sequence[str]], runs: Sequence[Mapping[str, Sequence[str]]]) -> list[dict[str, list[float]]]:
    """Per-image METEOR statistics of several PTB-tokenised caption sets against `gts`, in one JVM."""
    with MeteorJar() as jar:
        return [jar.stats(gts, res) for res in runs]
