"""Caption quality with pycocoevalcap: PTB tokenisation, BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, SPICE.

One call scores a whole split: the captions and references are tokenised once, and CIDEr-D's document
frequencies come from the references of exactly the images scored (so per-shard CIDEr must never be
averaged). Scores are fractions in [0, 1] (CIDEr can exceed 1); reports multiply by 100.

SPICE needs Stanford CoreNLP 3.6.0 jars that pycocoevalcap downloads at first use. Without them (no
network) it is recorded as unavailable with the reason and the remedy, and the other metrics stand; the
same holds for any scorer that raises or returns a NaN per-image score (SPICE does for captions it cannot
parse), so one broken metric never costs the others.

Every text is reduced to one line before the PTB tokenizer sees it, and one line per text must come back
(bench/metrics/ptb.py): a carriage return in a reference must never shift images onto other references.
"""

from __future__ import annotations

import math
import os
import shutil
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE")
# The views of METRICS the harness shows (in its order unless said), so no other module lists
# metric names.
BLEU_METRICS = tuple(m for m in METRICS if m.startswith("BLEU-"))  # n-gram orders 1..4, in order
JAVA_METRICS = ("METEOR", "SPICE")  # scored by Java subprocesses: the slow ones
#: The papers' table columns (BLEU-4 alone of the BLEUs); all are "higher is better".
TABLE_METRICS = tuple(m for m in METRICS if m not in BLEU_METRICS or m == "BLEU-4")
SUMMARY_METRICS = ("BLEU-1", *TABLE_METRICS)  # summary.csv / summary.md columns
#: bootstrap_ci's default: the table's metrics but SPICE (its jars are often absent offline).
INTERVAL_METRICS = tuple(m for m in TABLE_METRICS if m != "SPICE")
SWEEP_METRICS = tuple(m for m in TABLE_METRICS if m not in JAVA_METRICS)  # per sweep value: fast ones
#: errprop's quality measures (stats.py resamples both exactly from the texts), its headline first.
ERRPROP_METRICS = ("CIDEr", "BLEU-4")
#: corpus metrics resampled from summed statistics rather than as a mean of per-image values
STATISTICS_METRICS = tuple(m for m in METRICS if m in BLEU_METRICS or m in ("METEOR", "CIDEr"))
CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
#: Appended to the JVM's option variables for every Java child; the last of a repeated option wins, so
#: these beat a user's `-Duser.language=de` and numbers cross the pipe with decimal points.
ENGLISH_JVM_OPTIONS = "-Duser.language=en -Duser.country=US"
#: A caption longer than this many words is named in the scores' notes: COCO's references run to about 50
#: words, so such a caption is a runaway generation. It is scored as it is (what pycocoevalcap scores);
#: BLEU, METEOR, ROUGE-L, CIDEr and their bootstrap take about a second more for 5,000 words
#: (benchmarks/long_caption.py), SPICE parses it whole.
LONG_CAPTION_WORDS = 100


@dataclass
class QualityScores:
    corpus: dict[str, float]
    per_image: dict[str, dict[str, float]]
    unavailable: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # for the job's log and scores.json: odd captions
    # PTB-tokenised (references, captions) exactly as scored, for bootstrap statistics; not saved.
    tokenized: tuple[dict[str, list[str]], dict[str, list[str]]] | None = field(
        default=None, repr=False, compare=False)


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables for the duration (children inherit them), then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _appended(name: str, options: str) -> str:
    return f"{os.environ[name]} {options}" if os.environ.get(name, "").strip() else options


@contextmanager
def english_jvm() -> Iterator[None]:
    """Java children (METEOR, the PTB tokenizer, SPICE) get an English UTF-8 locale for the duration.

    METEOR and the PTB tokenizer exchange numbers with the JVM as text; a decimal-comma locale breaks
    their parsers. The JVM maps the C locale to en_US, and C.UTF-8 keeps non-ASCII captions intact; the
    JVM's own locale options are forced too, after any the user set (the JVM applies the last one).
    """
    # The JVM reads JAVA_TOOL_OPTIONS, then its command line (JDK_JAVA_OPTIONS joins it), then
    # _JAVA_OPTIONS: the locale goes last into each that is set, so no user setting comes after it.
    options = {name: _appended(name, ENGLISH_JVM_OPTIONS) for name in ("JDK_JAVA_OPTIONS", "_JAVA_OPTIONS")
               if os.environ.get(name, "").strip()}
    with _environment(LC_ALL="C.UTF-8", JAVA_TOOL_OPTIONS=_appended("JAVA_TOOL_OPTIONS", ENGLISH_JVM_OPTIONS),
                      **options):
        yield


def java_missing_reason() -> str | None:
    if shutil.which("java") is None:
        return "no 'java' on PATH: install a Java runtime (17 works), e.g. apt-get install default-jre"
    return None


def spice_missing_reason() -> str | None:
    """None if SPICE can run offline, else why not and how to fix it."""
    import pycocoevalcap.spice as spice_pkg

    lib = Path(spice_pkg.__file__).parent / "lib"
    missing = [jar for jar in CORENLP_JARS if not (lib / jar).is_file()]
    if missing:
        return (
            f"SPICE needs {', '.join(missing)} in {lib}: download stanford-corenlp-full-2015-12-09.zip "
            "from https://nlp.stanford.edu/software/ and copy those jars there (pycocoevalcap fetches "
            "them itself on first use when the network allows)"
        )
    return None


def score_captions(
    captions: dict[str, str],
    references: dict[str, list[str]],
    metrics: tuple[str, ...] = METRICS,
) -> QualityScores:
    """Score `captions` (image_id -> caption) against `references` (image_id -> list of captions).

    Only images that have a caption are scored; every one of them must have references.
    """
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; accepted: {', '.join(METRICS)}")
    ids = sorted(captions)
    if not ids:
        raise ValueError("no captions to score")
    lacking = [i for i in ids if not references.get(i)]
    if lacking:
        raise ValueError(f"{len(lacking)} captioned image(s) have no references, e.g. {lacking[:3]}")
    reason = java_missing_reason()
    if reason:
        raise RuntimeError(f"caption scoring needs Java: {reason}")
    with english_jvm():
        return _score(captions, references, metrics, ids)


def _score(captions: dict[str, str], references: dict[str, list[str]], metrics: tuple[str, ...],
           ids: list[str]) -> QualityScores:
    from bench.metrics.ptb import tokenize

    gts = tokenize({i: references[i] for i in ids}, "reference")
    res = tokenize({i: [captions[i]] for i in ids}, "caption")

    corpus: dict[str, float] = {}
    per_image: dict[str, dict[str, float]] = {i: {} for i in ids}
    unavailable: dict[str, str] = {}
    for names, scorer in _scorers(metrics):
        try:
            outcome = scorer(gts, res)
        except Exception as err:  # noqa: BLE001 - one broken scorer must not cost the other metrics
            why = str(err) if isinstance(err, SpiceUnavailable) else \
                f"scorer failed: {traceback.format_exception_only(err)[-1].strip()}"
            unavailable.update(dict.fromkeys(names, why))
            continue
        for name, (score, scores) in outcome.items():
            values = [float(s) for s in scores]
            if math.isnan(float(score)) or any(math.isnan(v) for v in values):
                bad = [i for i, v in zip(ids, values, strict=True) if math.isnan(v)]
                unavailable[name] = (f"{name} gave NaN for {len(bad)} of {len(ids)} image(s), e.g. {bad[:3]}"
                                     if bad else f"{name} gave a NaN corpus score")
                continue
            corpus[name] = float(score)
            for i, v in zip(ids, values, strict=True):
                per_image[i][name] = v
    return QualityScores(corpus, per_image, unavailable, _long_caption_notes(captions, ids), tokenized=(gts, res))


def _long_caption_notes(captions: dict[str, str], ids: list[str]) -> list[str]:
    words = {i: len(captions[i].split()) for i in ids}
    long = [i for i in ids if words[i] > LONG_CAPTION_WORDS]
    if not long:
        return []
    longest = max(long, key=words.__getitem__)
    return [f"{len(long)} caption(s) over {LONG_CAPTION_WORDS} words (longest: {words[longest]} words, image "
            f"{longest}), scored as they are: a runaway generation?"]


Scorer = Callable[[dict[str, list[str]], dict[str, list[str]]], dict[str, tuple[float, list[float]]]]


def _scorers(metrics: tuple[str, ...]) -> list[tuple[list[str], Scorer]]:
    """(metric names, scorer) for each pycocoevalcap scorer the metrics need; imports stay lazy."""
    out: list[tuple[list[str], Scorer]] = []
    bleu = [f"BLEU-{n}" for n in range(1, 5) if f"BLEU-{n}" in metrics]
    if bleu:
        out.append((bleu, _bleu(bleu)))
    for name, scorer in (("METEOR", _meteor), ("ROUGE-L", _rouge), ("CIDEr", _cider), ("SPICE", _spice)):
        if name in metrics:
            out.append(([name], scorer))
    return out


def _bleu(names: list[str]) -> Scorer:
    def score(gts, res):
        from pycocoevalcap.bleu.bleu import Bleu

        corpus, per_image = Bleu(4).compute_score(gts, res, verbose=0)
        return {name: (corpus[int(name[-1]) - 1], per_image[int(name[-1]) - 1]) for name in names}

    return score


def _meteor(gts, res):
    from bench.metrics.meteor import pooled_meteor

    with pooled_meteor() as meteor:  # the jar this process has started before, if any: 5 s saved
        return {"METEOR": meteor.compute_score(gts, res)}


def _rouge(gts, res):
    from pycocoevalcap.rouge.rouge import Rouge

    return {"ROUGE-L": Rouge().compute_score(gts, res)}


def _cider(gts, res):
    from pycocoevalcap.cider.cider import Cider

    return {"CIDEr": Cider().compute_score(gts, res)}


def _spice(gts, res):
    reason = spice_missing_reason()
    if reason:
        raise SpiceUnavailable(reason)
    from bench.metrics.spice import spice_scores

    return {"SPICE": spice_scores(gts, res)}


class SpiceUnavailable(RuntimeError):
    """SPICE cannot run here (its jars are absent); the message says how to fix it."""
