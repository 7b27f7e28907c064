"""The errprop phase: the error-propagation measurements of bench/metrics/errprop.py, for any captioner.

Nothing here depends on a paradigm: what runs is what the captioner declares (`probes`,
`injection_levels`, `probe_settings`, `probe_decoding`), and a quantity a captioner cannot have is
recorded under "unavailable", never replaced by another one.

- Quality by length uses the eval phase's captions and per-image scores on the whole split.
- The probes run on the first `errprop.images` readable images of the split (bench.samples.readable):
  repetition rate on `caption_raw`; free-running and teacher-forced word accuracy and the exposure
  gap on the probe baseline (`probe_decoding` of the job's decoding); error injection for every
  (probe setting, injection level, word position): wrong words drawn per image from the training
  captions' content words, and the control (the original word through the same path).
- Corpus BLEU-4 and CIDEr-D here come from bench/metrics/stats.py (pycocoevalcap's definitions on
  word-tokenised text); intervals are 95% percentile bootstraps. The quality drop of an injection is a
  paired bootstrap whose unit is one injection (image, wrong word); an image's draws are resampled
  independently. The control's quality drop is in the summary over positions (one interval per
  curve; per position its change counts suffice to show the noise floor).
"""

from __future__ import annotations

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


def quality_drop(references: dict[str, list[str]], pairs: list[tuple[str, str, str]],
                 n_resamples: int) -> dict[str, Any]:
    """Corpus CIDEr-D and BLEU-4 of uninjected minus injected captions over `pairs` (image_id,
    uninjected, injected), one resampling unit per pair, with paired bootstrap intervals."""
    from bench.metrics.stats import paired_test

    gts = {f"{i}#{n}": [_tok(r) for r in references[i]] for n, (i, _, _) in enumerate(pairs)}
    before = {f"{i}#{n}": [_tok(a)] for n, (i, a, _) in enumerate(pairs)}
    after = {f"{i}#{n}": [_tok(b)] for n, (i, _, b) in enumerate(pairs)}
    out = {}
    for metric in QUALITY:
        r = paired_test(gts, before, after, metric=metric, n_resamples=n_resamples)
        out[metric] = {"uninjected": r.score_a, "injected": r.score_b, "drop": r.delta, "low": r.low,
                       "high": r.high, "p_value": r.p_value}
    return out


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
    probes = Probes(captioner, pixels, ids, references, cfg)
    probes.run(report, decoding, [r for s in task.samples("train") for r in s.references], log)
    write_json(path, report)
    return _headline(report)


class Probes:
    """The probes on one set of images: batching, the baseline captions, and each measurement."""

    def __init__(self, captioner, pixels, ids: list[str], references: dict[str, list[str]],
                 cfg: dict[str, Any]):
        self.captioner, self.pixels, self.ids, self.references, self.cfg = captioner, pixels, ids, references, cfg
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
        pool = ep.content_words(train_captions)
        report["injection_setup"] = {"wrong_words": self.cfg["wrong_words"], "seed": self.cfg["seed"],
                                     "pool": len(pool), "levels": list(captioner.injection_levels),
                                     "settings": [_label(s) for s in captioner.probe_settings]}
        report["injection"], report["injection_summary"] = [], []
        for n, (extra, setting) in enumerate(zip(captioner.probe_settings or [{}], settings, strict=False)):
            probe = captioner.probe_decoding(setting)
            base = bases.get(n) or dict(zip(self.ids, self._batched(captioner.caption, rows, **probe), strict=True))
            for level in captioner.injection_levels or (None,):
                log(f"errprop: injection, {_label(extra)}, level {level}")
                curve, summary = self._injection(base, pool, level, probe)
                tags = {"setting": _label(extra), "level": level}
                report["injection"] += [{**tags, **row} for row in curve]
                report["injection_summary"].append({**tags, **summary})
        report["injection_setup"]["failures"] = {"count": len(self.failures), "first": self.failures[:3]}

    def _injection(self, base: dict[str, str], pool: list[str], level: float | None,
                   decoding: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        curve, pooled, pooled_control = [], [], []
        for k in range(self.cfg["positions"]):
            rows = [n for n, i in enumerate(self.ids) if len(ep.words(base[i])) > k]
            if not rows:
                break
            originals = [ep.words(base[self.ids[n]]) for n in rows]
            draws = [ep.draw_wrong_words(pool, o, self.cfg["wrong_words"], self.cfg["seed"],
                                         f"{self.ids[n]}|{k}") for n, o in zip(rows, originals, strict=True)]
            wrong = self._inject(rows, base, k, draws, level, decoding)
            control = self._inject(rows, base, k, [[o[k]] for o in originals], level, decoding)
            curve.append({"position": k, "images": len(rows), "injections": len(wrong),
                          **_effects(wrong), **{f"control_{key}": v for key, v in _effects(control).items()},
                          "quality": quality_drop(self.references, _pairs(wrong), self.cfg["n_resamples"])})
            pooled += wrong
            pooled_control += control
        summary: dict[str, Any] = {"injections": len(pooled)}
        if pooled:
            summary.update({**_effects(pooled), **{f"control_{key}": v for key, v in _effects(pooled_control).items()},
                            "quality": quality_drop(self.references, _pairs(pooled), self.cfg["n_resamples"]),
                            "control_quality": quality_drop(self.references, _pairs(pooled_control),
                                                            self.cfg["n_resamples"])})
        return curve, summary

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


def _effects(records: list[dict[str, Any]]) -> dict[str, float]:
    n = max(1, len(records))
    return {"changed_before": sum(r["changed_before"] for r in records) / n,
            "changed_after": sum(r["changed_after"] for r in records) / n,
            "survival": sum(r["survived"] for r in records) / n}


def _pairs(records: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(r["image_id"], r["before"], r["after"]) for r in records]


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
        for key in ("changed_before", "changed_after", "survival", "control_changed_before",
                    "control_changed_after", "control_survival"):
            out[f"{tag}/{key}"] = row[key]
        for metric in QUALITY:
            out[f"{tag}/{metric}_drop"] = row["quality"][metric]["drop"]
            out[f"{tag}/control_{metric}_drop"] = row["control_quality"][metric]["drop"]
    return out
