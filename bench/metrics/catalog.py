"""Every metric the harness reports, with its direction, declared once.

Following lm-evaluation-harness (a metric knows whether higher is better), the direction lives beside
the metric's name here and nowhere else: the comparisons record it per test (`higher_is_better`), and
the tables, figures and verdict read it from there or from `higher_is_better()`. A new metric is one
line below; no list of metric names elsewhere needs editing.

`EXTRA_METRICS` are the per-image metrics beyond pycocoevalcap's (bench/metrics/quality.py): CLIPScore,
RefCLIPScore (bench/metrics/clipscore.py) and CHAIR (bench/metrics/chair.py). They are compared with
the same paired tests as the table metrics wherever every compared row has them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    """A metric's name, direction and where it comes from."""

    name: str
    higher_is_better: bool
    source: str


_DECLARED = (
    *(MetricInfo(f"BLEU-{n}", True, "pycocoevalcap") for n in range(1, 5)),
    MetricInfo("METEOR", True, "pycocoevalcap"),
    MetricInfo("ROUGE-L", True, "pycocoevalcap"),
    MetricInfo("CIDEr", True, "pycocoevalcap (CIDEr-D)"),
    MetricInfo("SPICE", True, "pycocoevalcap"),
    MetricInfo("CLIPScore", True, "Hessel et al. 2021, w = 2.5"),
    MetricInfo("RefCLIPScore", True, "Hessel et al. 2021, harmonic mean with the best reference"),
    MetricInfo("CHAIR-i", False, "Rohrbach et al. 2018: hallucinated / mentioned object instances"),
    MetricInfo("CHAIR-s", False, "Rohrbach et al. 2018: captions with a hallucinated object"),
    MetricInfo("CHAIR-recall", True, "Rohrbach et al. 2018: ground-truth objects mentioned"),
    # diversity.json's per-image measures (bench/metrics/diversity.py): mBLEU-4 is lower when diverse.
    MetricInfo("div1", True, "distinct unigrams / words of the k samples"),
    MetricInfo("div2", True, "distinct bigrams / words of the k samples"),
    MetricInfo("mbleu4", False, "BLEU-4 of each sample against the others"),
    MetricInfo("self_cider", True, "Self-CIDEr (Wang & Chan 2019)"),
)
CATALOG: dict[str, MetricInfo] = {m.name: m for m in _DECLARED}
EXTRA_METRICS = ("CLIPScore", "RefCLIPScore", "CHAIR-i", "CHAIR-s", "CHAIR-recall")


def higher_is_better(metric: str) -> bool:
    """The declared direction of `metric` (a comparison's "diversity <name>" reads <name>'s).

    An undeclared name is an error naming the declared ones: a wrong default would flip a verdict.
    """
    name = metric.removeprefix("diversity ")
    if name not in CATALOG:
        raise KeyError(f"metric {metric!r} declares no direction; declared: {', '.join(CATALOG)} "
                       "(add it to bench/metrics/catalog.py)")
    return CATALOG[name].higher_is_better


def best(values: dict[str, float], metric: str) -> float:
    """The best of `values` by the declared direction of `metric`."""
    return (max if higher_is_better(metric) else min)(values.values())
