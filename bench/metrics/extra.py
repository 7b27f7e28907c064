"""The per-image metrics beyond pycocoevalcap's, for one scored split: CLIPScore and RefCLIPScore
(bench/metrics/clipscore.py), CHAIR (bench/metrics/chair.py).

`extras` says what to use: `clip` (a CLIP hub id or local directory; None or "none" skips CLIPScore)
and `instances` (COCO instances_*.json files; none given skips CHAIR). A metric that cannot be computed
here (weights absent offline, images absent, images outside the instance annotations) is recorded as
unavailable with the reason and the remedy, as SPICE is, and costs no other metric.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CLIP_METRICS = ("CLIPScore", "RefCLIPScore")
CHAIR_METRICS = ("CHAIR-i", "CHAIR-s", "CHAIR-recall")


@dataclass
class ExtraScores:
    corpus: dict[str, float] = field(default_factory=dict)
    per_image: dict[str, dict[str, float]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)

    def add(self, corpus: dict[str, float], per_image: dict[str, dict[str, float]]) -> None:
        self.corpus.update(corpus)
        for image_id, values in per_image.items():
            self.per_image.setdefault(image_id, {}).update(values)


def extra_scores(task, split: str, captions: Mapping[str, str], references: Mapping[str, list[str]],
                 extras: Mapping[str, Any]) -> ExtraScores:
    """CLIPScore/RefCLIPScore and CHAIR of `captions` as `extras` asks; unavailable ones with why."""
    out = ExtraScores()
    clip = extras.get("clip")
    if clip and str(clip).lower() != "none":
        _guarded(out, CLIP_METRICS, lambda: _clip(str(clip), task, split, captions, references))
    instances = extras.get("instances") or []
    if instances:
        _guarded(out, CHAIR_METRICS, lambda: _chair(instances, captions, references))
    return out


def _guarded(out: ExtraScores, names: tuple[str, ...], compute) -> None:
    from bench.metrics.clipscore import ClipUnavailable

    try:
        out.add(*compute())
    except (ClipUnavailable, ValueError) as err:
        out.unavailable.update(dict.fromkeys(names, str(err)))
    except Exception as err:  # noqa: BLE001 - one broken metric must not cost the others
        out.unavailable.update(dict.fromkeys(names, f"failed: {traceback.format_exception_only(err)[-1].strip()}"))


def _clip(source: str, task, split: str, captions, references):
    from bench.metrics.clipscore import clip_scores, load_clip

    images = {s.image_id: s.image_path for s in task.samples(split) if s.image_id in captions}
    model, processor = load_clip(source)
    return clip_scores(model, processor, images, captions, references)


def _chair(instances, captions, references):
    from bench.metrics.chair import chair_scores, load_instances
    from tasks.karpathy import expand_path

    return chair_scores(captions, references, load_instances([expand_path(p) for p in instances]))
