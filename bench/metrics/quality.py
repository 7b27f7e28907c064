"""Caption quality with pycocoevalcap: PTB tokenisation, BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, SPICE.

One call scores a whole split: the captions and references are tokenised once, and CIDEr-D's document
frequencies come from the references of exactly the images scored (so per-shard CIDEr must never be
averaged). Scores are fractions in [0, 1] (CIDEr can exceed 1); reports multiply by 100.

SPICE needs Stanford CoreNLP 3.6.0 jars that pycocoevalcap downloads at first use. Without them (no
network) it is recorded as unavailable with the reason and the remedy, and the other metrics stand.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE")
CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")


@dataclass
class QualityScores:
    corpus: dict[str, float]
    per_image: dict[str, dict[str, float]]
    unavailable: dict[str, str] = field(default_factory=dict)
    # PTB-tokenised (references, captions) exactly as scored, for bootstrap statistics; not saved.
    tokenized: tuple[dict[str, list[str]], dict[str, list[str]]] | None = field(
        default=None, repr=False, compare=False)


@contextmanager
def english_jvm() -> Iterator[None]:
    """Java children get an English UTF-8 locale for the duration.

    METEOR and the PTB tokenizer exchange numbers with the JVM as text; a decimal-comma locale breaks
    their parsers. The JVM maps the C locale to en_US, and C.UTF-8 keeps non-ASCII captions intact.
    """
    saved = os.environ.get("LC_ALL")
    os.environ["LC_ALL"] = "C.UTF-8"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("LC_ALL", None)
        else:
            os.environ["LC_ALL"] = saved


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
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": r} for r in references[i]] for i in ids})
    res = tokenizer.tokenize({i: [{"caption": captions[i]}] for i in ids})
    # pycocoevalcap's scorers assert identical key order; the tokenizer keeps insertion order.
    gts = {i: gts[i] for i in ids}
    res = {i: res[i] for i in ids}

    corpus: dict[str, float] = {}
    per_image: dict[str, dict[str, float]] = {i: {} for i in ids}
    unavailable: dict[str, str] = {}

    def keep(name: str, score: float, scores) -> None:
        corpus[name] = float(score)
        for i, s in zip(ids, scores, strict=True):
            per_image[i][name] = float(s)

    if any(m.startswith("BLEU") for m in metrics):
        from pycocoevalcap.bleu.bleu import Bleu

        score, scores = Bleu(4).compute_score(gts, res, verbose=0)
        for n in range(4):
            if f"BLEU-{n + 1}" in metrics:
                keep(f"BLEU-{n + 1}", score[n], scores[n])
    if "METEOR" in metrics:
        from pycocoevalcap.meteor.meteor import Meteor

        meteor = Meteor()
        keep("METEOR", *meteor.compute_score(gts, res))
        del meteor  # its __del__ ends the Java process now rather than at interpreter exit
    if "ROUGE-L" in metrics:
        from pycocoevalcap.rouge.rouge import Rouge

        keep("ROUGE-L", *Rouge().compute_score(gts, res))
    if "CIDEr" in metrics:
        from pycocoevalcap.cider.cider import Cider

        keep("CIDEr", *Cider().compute_score(gts, res))
    if "SPICE" in metrics:
        reason = spice_missing_reason()
        if reason:
            unavailable["SPICE"] = reason
        else:
            from pycocoevalcap.spice.spice import Spice

            score, scores = Spice().compute_score(gts, res)
            keep("SPICE", score, [s["All"]["f"] for s in scores])
    return QualityScores(corpus, per_image, unavailable, tokenized=(gts, res))
