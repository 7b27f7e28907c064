"""The errprop phase: the error-propagation measurements of bench/metrics/errprop.py, for any captioner.

Nothing here depends on a paradigm: what runs is what the captioner declares (`probes`,
`injection_levels`, `probe_settings`, `probe_decoding`), and a quantity a captioner cannot have is
recorded under "unavailable", never replaced by another one.

- Quality by length uses the eval phase's captions and per-image scores on the whole split.
- The probes run on the first `errprop.images` readable images of the split (bench.samples.readable):
  repetition rate on `caption_raw`; free-running and teacher-forced word accuracy and the exposure
  gap on the probe baseline (`probe_decoding` of the job's decoding); error injection for every
  (probe setting, injection level), summarised per level and, for the change counts, per injected
  word position k.
- Injection is like for like across models (bench/metrics/errprop.py, docstring c): the slots of an
  image are the role words of its references (the task's `word_classes()` when it has one, e.g.
  colour and shape on shapes; else the nouns of `noun_table` over the training captions), the first
  `errprop.positions` of them; each slot's `errprop.wrong_words` wrong words depend on (seed, image,
  slot word) only, so every model gets the same ones. A model is injected where its caption says the
  slot's word; the share of slots covered is recorded. For each injection: the right-word control
  (the slot word through the same path) and the model-free substitution; every change count is
  reported raw and net of its own control (paired per injection), and the quality drops are
  `propagation_quality`'s (intervals by resampling images; the resampled values are kept so that
  the report combines seeds as for quality).
- Survival is reported only where the captioner does not fix it by construction: a captioner lists
  in `survival_by_construction` the injection levels whose word cannot be removed (autoregressive
  forcing: None, "when generated"); there it is recorded as null with `survival_fixed` true.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from bench import files
from bench.api import PROBE_INJECTION, PROBE_RAW, PROBE_TEACHER_FORCING
from bench.metrics import errprop as ep
from bench.metrics.quality import ERRPROP_METRICS
from bench.plan import Job
from bench.results import read_json, write_json
from bench.samples import readable

QUALITY = ERRPROP_METRICS


def _tok(text: str) -> str:
    return " ".join(ep.words(text))


def _quality_by_length(job: Job, references: dict[str, list[str]], n_resamples: int) -> list[dict[str, Any]]:
    from bench.metrics.stats import bootstrap_ci

    scores = read_json(job.dir / files.SCORES)
    captions = {c["image_id"]: c["caption"] for c in read_json(job.dir / files.CAPTIONS)}
    cider = {i: s["CIDEr"] for i, s in scores["per_image"].items() if i in captions}
    split_cider = "CIDEr-D per image"  # the split-level per-image scores, resampled as a mean

    def score(ids: list[str]) -> dict[str, Any]:
        gts = {i: [_tok(r) for r in references[i]] for i in ids}
        res = {i: [_tok(captions[i])] for i in ids}
        ci = bootstrap_ci(gts, res, metrics=("BLEU-4", split_cider), n_resamples=n_resamples,
                          per_image={i: {split_cider: cider[i]} for i in ids})
        return {"BLEU-4": ci["BLEU-4"].point, "BLEU-4_low": ci["BLEU-4"].low, "BLEU-4_high": ci["BLEU-4"].high,
                "CIDEr_low": ci[split_cider].low, "CIDEr_high": ci[split_cider].high}

    return ep.quality_by_length({i: captions[i] for i in cider}, references, cider, score)


def errprop_phase(job: Job, task, captioner, log: Callable[[str], None]) -> dict[str, Any]:
    path = job.dir / files.ERRPROP
    if path.is_file():
        log("errprop found; not measuring again")
        return _headline(read_json(path))
    cfg, split = job.errprop, job.eval["split"]
    references = task.references(split)
    report: dict[str, Any] = {"unavailable": {}, "definitions": "bench/metrics/errprop.py"}
    if (job.dir / files.SCORES).is_file() and (job.dir / files.CAPTIONS).is_file():
        report["quality_by_length"] = _quality_by_length(job, references, cfg["n_resamples"])
    else:
        report["unavailable"]["quality_by_length"] = "needs the eval phase's captions and scores"

    samples, pixels, unreadable = readable(task.samples(split), captioner, cfg["images"])
    if pixels is None:
        raise RuntimeError(f"no readable image in split {split!r} of {job.task} to probe")
    report.update(images=len(samples), images_unreadable=unreadable, images_missing=task.missing(split))
    ids = [s.image_id for s in samples]
    decoding = {**captioner.default_decoding(), **job.decoding}
    log(f"errprop probes on {len(samples)} images (probes: {', '.join(sorted(captioner.probes)) or 'none'})")
    probes = Probes(captioner, pixels, ids, references, cfg, getattr(task, "word_classes", None))
    probes.run(report, decoding, [r for s in task.samples("train") for r in s.references], log)
    write_json(path, report)
    return _headline(report)


class Probes:
    """The probes on one set of images: batching, the baseline captions, and each measurement."""

    def __init__(self, captioner, pixels, ids: list[str], references: dict[str, list[str]],
                 cfg: dict[str, Any], word_classes: Callable[[], dict[str, str]] | None = None):
        self.captioner, self.pixels, self.ids, self.references, self.cfg = captioner, pixels, ids, references, cfg
        self.word_classes = word_classes  # the task's word -> role table, if it has one
        self.failures: list[str] = []  # injections the captioner refused (one image each), with why

    def _batched(self, call: Callable[..., list[str]], rows: list[int], *per_row: list[Any], **kwargs) -> list[str]:
        import torch

        out: list[str] = []
        size = self.cfg["batch_size"]
        with torch.inference_mode():
            for start in range(0, len(rows), size):
                chosen = rows[start: start + size]
                pixels = self.pixels[chosen].to(self.captioner.device)
                out += call(pixels, *(values[start: start + size] for values in per_row), **kwargs)
        return out

    def run(self, report: dict[str, Any], decoding: dict[str, Any], train_captions: list[str],
            log: Callable[[str], None]) -> None:
        captioner, rows = self.captioner, list(range(len(self.ids)))
        probes = captioner.probes
        if PROBE_RAW in probes:
            report["repetition_rate"] = ep.repetition_rate(self._batched(captioner.caption_raw, rows, **decoding))
        else:
            report["unavailable"]["repetition_rate"] = "no raw-output probe"
        settings = [{**decoding, **s} for s in captioner.probe_settings] or [decoding]
        bases = {0: dict(zip(self.ids, self._batched(captioner.caption, rows, **captioner.probe_decoding(settings[0])),
                             strict=True))}
        base = bases[0]
        free = ep.free_running_hits(base, self.references)
        report["free_running"] = ep.position_accuracy(list(free.values()))
        if PROBE_TEACHER_FORCING in probes:
            aligned = [" ".join(ep.best_aligned(ep.words(base[i]), [ep.words(r) for r in self.references[i]]))
                       for i in self.ids]
            forced = self._batched(captioner.teacher_forced_words, rows, aligned)
            report["teacher_forced"] = ep.position_accuracy(forced)
            report["exposure_gap"] = ep.exposure_gap(report["free_running"], report["teacher_forced"])
        else:
            report["unavailable"]["teacher_forced"] = "no teacher-forcing probe (no exposure gap)"
        if PROBE_INJECTION not in probes:
            report["unavailable"]["injection"] = "no injection probe"
            return
        classes, source = self.classes(train_captions)
        slots = {i: ep.role_slots(self.references[i], classes)[: self.cfg["positions"]] for i in self.ids}
        wrong = {(i, w): ep.draw_role_words(classes, w, self.references[i], self.cfg["wrong_words"],
                                            self.cfg["seed"], i) for i in self.ids for w in slots[i]}
        fixed = list(getattr(captioner, "survival_by_construction", ()))
        report["injection_setup"] = {"wrong_words": self.cfg["wrong_words"], "seed": self.cfg["seed"],
                                     "word_classes": source, "roles": dict(Counter(classes.values())),
                                     "slots": sum(len(v) for v in slots.values()),
                                     "levels": list(captioner.injection_levels), "survival_by_construction": fixed,
                                     "settings": [_label(s) for s in captioner.probe_settings]}
        report["injection"], report["injection_summary"] = [], []
        for n, (extra, setting) in enumerate(zip(captioner.probe_settings or [{}], settings, strict=False)):
            probe = captioner.probe_decoding(setting)
            base = bases.get(n) or dict(zip(self.ids, self._batched(captioner.caption, rows, **probe), strict=True))
            for level in captioner.injection_levels or (None,):
                log(f"errprop: injection, {_label(extra)}, level {level}")
                records = self._injection(base, slots, wrong, level, probe)
                tags = {"setting": _label(extra), "level": level}
                report["injection"] += [{**tags, **row} for row in _curve(records)]
                report["injection_summary"].append({**tags, **self._summary(records, slots, level in fixed)})
        report["injection_setup"]["failures"] = {"count": len(self.failures), "first": self.failures[:3]}

    def classes(self, train_captions: list[str]) -> tuple[dict[str, str], str]:
        """The word-class table of the wrong words and where it comes from."""
        table = self.word_classes() if self.word_classes else None
        if table:
            return dict(table), "the task's word_classes()"
        return ep.noun_table(train_captions), "nouns of the training captions (noun_table)"

    def _injection(self, base: dict[str, str], slots: dict[str, list[str]], wrong: dict[tuple[str, str], list[str]],
                   level: Any, decoding: dict[str, Any]) -> list[dict[str, Any]]:
        """One record per injection at a covered slot, with its control and substitution."""
        plan = []  # (row, k, slot word, wrong words): k is the slot word's first occurrence in the caption
        for n, i in enumerate(self.ids):
            original = ep.words(base[i])
            plan += [(n, original.index(w), w, wrong[(i, w)]) for w in slots[i] if w in original and wrong[(i, w)]]
        records = []
        for k in sorted({p[1] for p in plan}):
            chosen = [p for p in plan if p[1] == k]  # one slot per image at a given k (slots are distinct words)
            rows = [p[0] for p in chosen]
            controls = {r["image_id"]: r for r in self._inject(rows, base, k, [[p[2]] for p in chosen], level, decoding)}
            for r in self._inject(rows, base, k, [p[3] for p in chosen], level, decoding):
                control = controls.get(r["image_id"])
                if control is None:
                    continue  # no control to subtract: the injection is not counted
                original = ep.words(r["before"])
                records.append({**r, "position": k, "slot": original[k],
                                "substituted": " ".join(ep.substituted(original, k, r["word"])),
                                "control": control["after"], "control_changed_before": control["changed_before"],
                                "control_changed_after": control["changed_after"],
                                "control_survived": control["survived"]})
        return records

    def _summary(self, records: list[dict[str, Any]], slots: dict[str, list[str]], fixed: bool) -> dict[str, Any]:
        covered = {(r["image_id"], r["slot"]) for r in records}
        out: dict[str, Any] = {"injections": len(records), "slots": sum(len(v) for v in slots.values()),
                               "slots_covered": len(covered), "images": len({r["image_id"] for r in records}),
                               "survival_fixed": fixed}
        if not records:
            return out
        out.update(_effects(records))
        survived = [r for r in records if r["survived"]]
        out["survival"] = None if fixed else len(survived) / len(records)
        out["changed_given_survived"] = _mean([r["changed_before"] + r["changed_after"] - r["control_changed_before"]
                                               - r["control_changed_after"] for r in survived])
        units = [(r["image_id"], r["before"], r["after"], r["substituted"], r["control"]) for r in records]
        out["quality"] = ep.propagation_quality(self.references, units, self.cfg["n_resamples"], self.cfg["seed"],
                                                images=self.ids)
        return out

    def _inject(self, rows: list[int], base: dict[str, str], k: int, draws: list[list[str]],
                level: float | None, decoding: dict[str, Any]) -> list[dict[str, Any]]:
        """One record per (image, word): captions before and after and the effect (metrics c)."""
        records = []
        for d in range(max((len(w) for w in draws), default=0)):
            chosen = [(n, w[d]) for n, w in zip(rows, draws, strict=True) if len(w) > d]
            captions = [base[self.ids[n]] for n, _ in chosen]
            injected = self._batched(lambda px, caps, words: self._inject_batch(px, caps, k, words, level, decoding),
                                     [n for n, _ in chosen], captions, [w for _, w in chosen])
            for (n, word), before, after in zip(chosen, captions, injected, strict=True):
                if after is None:
                    continue
                effect = ep.injection_effect(ep.words(before), ep.words(after), k, word)
                records.append({"image_id": self.ids[n], "word": word, "before": before, "after": after, **effect})
        return records


    def _inject_batch(self, pixels, captions: list[str], k: int, words: list[str], level: float | None,
                      decoding: dict[str, Any]) -> list[str | None]:
        """The captioner's injection on a batch; when it refuses the batch (a caption it cannot map to
        its tokens), image by image, with None (and the reason kept) for the images it refuses."""
        call = self.captioner.caption_with_injection
        try:
            return call(pixels, captions, k, words, level, **decoding)
        except ValueError:
            out: list[str | None] = []
            for i, (caption, word) in enumerate(zip(captions, words, strict=True)):
                try:
                    out += call(pixels[i: i + 1], [caption], k, [word], level, **decoding)
                except ValueError as err:
                    self.failures.append(str(err))
                    out.append(None)
            return out


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _effects(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean change counts per injection, raw, of the control, and net (each injection less its control)."""
    out: dict[str, Any] = {}
    for side in ("changed_before", "changed_after"):
        out[side] = _mean([r[side] for r in records])
        out[f"control_{side}"] = _mean([r[f"control_{side}"] for r in records])
        out[f"net_{side}"] = _mean([r[side] - r[f"control_{side}"] for r in records])
    out["control_survival"] = _mean([float(r["control_survived"]) for r in records])
    return out


def _curve(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per injected word position k: how many, and the change counts (quality is in the summary)."""
    rows = []
    for k in sorted({r["position"] for r in records}):
        at = [r for r in records if r["position"] == k]
        rows.append({"position": k, "images": len({r["image_id"] for r in at}), "injections": len(at),
                     "survival": _mean([float(r["survived"]) for r in at]), **_effects(at)})
    return rows


def _label(setting: dict[str, Any]) -> str:
    """A probe setting as a label usable in tables and MLflow keys: "default", "back_and_refine-False"."""
    return ",".join(f"{k}-{v}" for k, v in sorted(setting.items())) or "default"


def _headline(report: dict[str, Any]) -> dict[str, float]:
    """Flat metrics for result.json and MLflow: the repetition rate and each injection summary."""
    out: dict[str, float] = {}
    if "repetition_rate" in report:
        out["repetition_rate"] = report["repetition_rate"]
    for row in report.get("injection_summary", []):
        if not row.get("injections"):
            continue
        tag = f"injection/{row['setting']}" + ("" if row["level"] is None else f"/level_{row['level']}")
        for key in ("changed_before", "changed_after", "net_changed_before", "net_changed_after",
                    "control_changed_before", "control_changed_after", "survival", "changed_given_survived"):
            if row.get(key) is not None:
                out[f"{tag}/{key}"] = row[key]
        for metric in QUALITY:
            for key in ("drop", "substitution_drop", "control_drop", "propagation"):
                out[f"{tag}/{metric}_{key}"] = row["quality"][metric][key]["value"]
    return out
