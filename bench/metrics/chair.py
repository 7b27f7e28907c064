"""CHAIR (Rohrbach et al. 2018, "Object Hallucination in Image Captioning", EMNLP): how often a caption
names a COCO object that is not in the image.

- CHAIR-i: hallucinated objects / objects mentioned, over all captions (each object once per caption);
- CHAIR-s: captions with at least one hallucinated object / captions;
- CHAIR-recall: ground-truth objects mentioned / ground-truth objects.

Objects are COCO's 80 categories; the words a caption uses for them are the table in
bench/metrics/chair_objects.yaml (written for this repository; its source is named there), plurals made
here, multi-word names matched before single words. As in the paper, an image's ground-truth objects are
those of COCO's instance annotations together with those its reference captions name. Lower CHAIR is
better; higher recall is better (bench/metrics/catalog.py).

Per-image values, for the bootstrap intervals and paired tests (bench/metrics/stats.py resamples means
of per-image values): CHAIR-s is a mean already (1 or 0 per caption). CHAIR-i and recall are ratios of
sums, so each image carries its linearised value (delta method): for R = sum h / sum m over n images,
v_i = R + (h_i - R m_i) / mean(m). The mean of v is R exactly, and its bootstrap spread is the ratio's
first-order spread; an image that mentions no object carries R (it changes neither sum).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

TABLE = Path(__file__).with_name("chair_objects.yaml")
WORD = re.compile(r"[a-z]+")


@functools.cache
def object_words(path: Path = TABLE) -> dict[tuple[str, ...], str]:
    """(word, ...) -> category for every name in the table, singular and plural."""
    import yaml

    data = yaml.safe_load(Path(path).read_text())
    irregular = data.get("irregular", {})
    out: dict[tuple[str, ...], str] = {}
    for category, names in data["categories"].items():
        for name in names:
            words = tuple(str(name).lower().split())
            out[words] = category
            out[(*words[:-1], _plural(words[-1], irregular))] = category
    return out


def _plural(word: str, irregular: Mapping[str, str]) -> str:
    if word in irregular:
        return irregular[word]
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def objects_in(caption: str, table: Mapping[tuple[str, ...], str] | None = None) -> set[str]:
    """The COCO categories a caption names (longest names first: "hot dog" is not a dog)."""
    table = object_words() if table is None else table
    longest = max(len(k) for k in table)
    words = WORD.findall(caption.lower())
    found, n = set(), 0
    while n < len(words):
        for size in range(min(longest, len(words) - n), 0, -1):
            category = table.get(tuple(words[n:n + size]))
            if category is not None:
                found.add(category)
                n += size
                break
        else:
            n += 1
    return found


def load_instances(paths: Iterable[str | Path]) -> dict[str, set[str]]:
    """image id -> category names of its instance annotations, from COCO instances_*.json files."""
    out: dict[str, set[str]] = {}
    for path in paths:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            names = {int(c["id"]): str(c["name"]) for c in data["categories"]}
            for image in data["images"]:
                out.setdefault(str(image["id"]), set())
            for ann in data["annotations"]:
                out.setdefault(str(ann["image_id"]), set()).add(names[int(ann["category_id"])])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: not COCO instance annotations (expected 'images', 'annotations' and "
                             f"'categories' as in instances_val2014.json): {type(err).__name__}: {err}") from err
    unknown = {c for cats in out.values() for c in cats} - set(object_words().values())
    if unknown:
        raise ValueError(f"instance annotations name categories the CHAIR table lacks: {sorted(unknown)[:5]}")
    return out


def chair_scores(captions: Mapping[str, str], references: Mapping[str, list[str]],
                 instances: Mapping[str, set[str]]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(corpus CHAIR-i, CHAIR-s, CHAIR-recall; per-image values whose means are those) of `captions`."""
    ids = sorted(captions)
    lacking = [i for i in ids if i not in instances]
    if lacking:
        raise ValueError(f"{len(lacking)} captioned image(s) are not in the instance annotations, e.g. "
                         f"{lacking[:3]}: CHAIR needs COCO images and their instances_*.json")
    hallucinated, mentioned, covered, truth = {}, {}, {}, {}
    for i in ids:
        gt = set(instances[i]).union(*(objects_in(r) for r in references.get(i, [])))
        said = objects_in(captions[i])
        hallucinated[i], mentioned[i] = len(said - gt), len(said)
        covered[i], truth[i] = len(said & gt), len(gt)
    chair_i = _linearised(hallucinated, mentioned)
    recall = _linearised(covered, truth)
    per_image = {i: {"CHAIR-i": chair_i[i], "CHAIR-s": float(hallucinated[i] > 0), "CHAIR-recall": recall[i]}
                 for i in ids}
    corpus = {m: sum(p[m] for p in per_image.values()) / len(ids) for m in ("CHAIR-i", "CHAIR-s", "CHAIR-recall")}
    corpus["CHAIR-i"] = _ratio(hallucinated, mentioned)  # exact, not through the float sum
    corpus["CHAIR-recall"] = _ratio(covered, truth)
    return corpus, per_image


def _ratio(top: Mapping[str, int], bottom: Mapping[str, int]) -> float:
    total = sum(bottom.values())
    return sum(top.values()) / total if total else 0.0


def _linearised(top: Mapping[str, int], bottom: Mapping[str, int]) -> dict[str, float]:
    """Per-image values whose mean is sum(top) / sum(bottom) (delta method; see the module docstring)."""
    ratio = _ratio(top, bottom)
    mean = sum(bottom.values()) / len(bottom)
    if mean == 0:
        return dict.fromkeys(top, 0.0)
    return {i: ratio + (top[i] - ratio * bottom[i]) / mean for i in top}
