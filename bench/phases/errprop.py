"""The errprop phase: the four error-propagation measurements of bench/metrics/errprop.py.

Quality by length uses the eval phase's captions and per-image scores on the whole split; the probes
(per-position accuracy, injection, repetition) run on the first `errprop.images` images. BLEU-4 and
CIDEr-D inside this phase are computed by pycocoevalcap's pure-Python scorers on word-tokenised text
(no Java round trip per bucket or per position).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.metrics import errprop as ep
from bench.plan import Job
from bench.results import read_json, write_json
from bench.samples import readable


def _tokenised(texts: dict[str, list[str]]) -> dict[str, list[str]]:
    return {i: [" ".join(ep.words(t)) for t in v] for i, v in texts.items()}


def _bleu4(captions: dict[str, str], references: dict[str, list[str]], ids: list[str]) -> float:
    from pycocoevalcap.bleu.bleu import Bleu

    score, _ = Bleu(4).compute_score(_tokenised({i: references[i] for i in ids}),
                                     _tokenised({i: [captions[i]] for i in ids}), verbose=0)
    return float(score[3])


def _cider(captions: dict[str, str], references: dict[str, list[str]]) -> float:
    from pycocoevalcap.cider.cider import Cider

    ids = sorted(captions)
    score, _ = Cider().compute_score(_tokenised({i: references[i] for i in ids}),
                                     _tokenised({i: [captions[i]] for i in ids}))
    return float(score)


def errprop_phase(job: Job, task, captioner, log: Callable[[str], None]) -> dict[str, Any]:
    import torch

    path = job.dir / "errprop.json"
    if path.is_file():
        log("errprop found; not measuring again")
        return _headline(read_json(path))
    cfg, split = job.errprop, job.eval["split"]
    references = task.references(split)
    report: dict[str, Any] = {"unavailable": {}}
    scores_file = job.dir / "scores.json"
    if scores_file.is_file():
        scores = read_json(scores_file)
        captions = {c["image_id"]: c["caption"] for c in read_json(job.dir / "captions.json")}
        cider = {i: s["CIDEr"] for i, s in scores["per_image"].items()}
        report["quality_by_length"] = ep.quality_by_length(
            captions, references, cider, lambda ids: _bleu4(captions, references, ids))
    else:
        report["unavailable"]["quality_by_length"] = "needs the eval phase's captions and scores"

    samples, pixels, unreadable = readable(task.samples(split), captioner, cfg["images"])
    if pixels is None:
        raise RuntimeError(f"no readable image in split {split!r} of {job.task} to probe")
    report.update(images=len(samples), images_unreadable=unreadable, images_missing=task.missing(split))
    ids = [s.image_id for s in samples]
    decoding = {**captioner.default_decoding(), **job.decoding}
    vocabulary = [w for w, _ in Counter(w for s in task.samples("train")[:2000] for r in s.references
                                        for w in ep.words(r)).most_common(50)]
    log(f"errprop probes on {len(samples)} images")
    with torch.inference_mode():
        batches = [slice(i, i + cfg["batch_size"]) for i in range(0, len(samples), cfg["batch_size"])]
        base = {}
        for b in batches:
            base.update(zip(ids[b], captioner.caption(pixels[b].to(captioner.device), **_greedy(captioner, decoding)),
                            strict=True))
        raw = [c for b in batches for c in captioner.caption_raw(pixels[b].to(captioner.device), **decoding)]
        report["repetition_rate"] = ep.repetition_rate(raw)
        free = ep.free_running_hits(base, references)
        report["free_running"] = ep.position_accuracy(list(free.values()))
        if captioner.paradigm == "autoregressive":
            _autoregressive_probes(captioner, pixels, ids, base, references, vocabulary, cfg, report,
                                   _greedy(captioner, decoding))
        elif captioner.paradigm == "diffusion":
            _diffusion_probes(captioner, pixels, ids, base, references, vocabulary, cfg, decoding, report)
        else:
            report["unavailable"]["injection"] = f"{captioner.paradigm} captioners generate nothing to perturb"
    write_json(path, report)
    return _headline(report)


def _greedy(captioner, decoding: dict[str, Any]) -> dict[str, Any]:
    # Injection continues greedily, so its baseline must be the greedy caption too.
    return {**decoding, "num_beams": 1} if captioner.paradigm == "autoregressive" else decoding


def _autoregressive_probes(captioner, pixels, ids, base, references, vocabulary, cfg, report,
                           decoding: dict[str, Any] | None = None) -> None:
    device = captioner.device
    aligned = [" ".join(ep.best_aligned(ep.words(base[i]), [ep.words(r) for r in references[i]])) for i in ids]
    try:
        forced = captioner.teacher_forced_words(pixels.to(device), aligned)
        report["teacher_forced"] = ep.position_accuracy(forced)
        report["exposure_gap"] = ep.exposure_gap(report["free_running"], report["teacher_forced"])
    except NotImplementedError:
        report["unavailable"]["teacher_forced"] = f"{type(captioner).__name__} has no teacher_forced_words"
    curve = []
    try:
        for k in range(cfg["positions"]):
            chosen = [n for n, i in enumerate(ids) if len(ep.words(base[i])) > k + 1]
            if not chosen:
                break
            originals = [ep.words(base[ids[n]]) for n in chosen]
            prefixes = [w[:k] + [ep.wrong_word(w[k], vocabulary)] for w in originals]
            # the same length budget as the greedy baseline, or continuation and baseline differ by it
            injected = captioner.continue_from(pixels[chosen].to(device), prefixes, **(decoding or {}))
            changes = [ep.changes_after(o, ep.words(c), k) for o, c in zip(originals, injected, strict=True)]
            sub_refs = {ids[n]: references[ids[n]] for n in chosen}
            before = _cider({ids[n]: base[ids[n]] for n in chosen}, sub_refs)
            after = _cider({ids[n]: c for n, c in zip(chosen, injected, strict=True)}, sub_refs)
            curve.append({"position": k, "images": len(chosen), "mean_changed_after": sum(changes) / len(changes),
                          "cider_before": before, "cider_after": after, "cider_drop": before - after})
    except NotImplementedError:
        report["unavailable"]["injection"] = f"{type(captioner).__name__} has no continue_from"
    report["injection"] = curve


def _diffusion_probes(captioner, pixels, ids, base, references, vocabulary, cfg, decoding, report) -> None:
    report["unavailable"]["teacher_forced"] = "teacher forcing is undefined for parallel decoding"
    curve = []
    try:
        for k in range(cfg["positions"]):
            chosen = [n for n, i in enumerate(ids) if len(ep.words(base[i])) > k]
            if not chosen:
                break
            rows = {"recovered": 0, "changed_elsewhere": 0}
            for n in chosen:  # one image at a time: each gets its own wrong word
                original = ep.words(base[ids[n]])
                wrong = ep.wrong_word(original[k], vocabulary)
                text = captioner.caption_with_injection(pixels[n: n + 1].to(captioner.device), k, wrong,
                                                        cfg["inject_at"], **decoding)[0]
                injected = ep.words(text)
                rows["recovered"] += int(len(injected) <= k or injected[k] != wrong)
                rows["changed_elsewhere"] += ep.changes_elsewhere(original, injected, k)
            curve.append({"position": k, "images": len(chosen), "recovery_rate": rows["recovered"] / len(chosen),
                          "mean_changed_elsewhere": rows["changed_elsewhere"] / len(chosen)})
    except NotImplementedError:
        report["unavailable"]["injection"] = f"{type(captioner).__name__} has no caption_with_injection"
    report["injection"] = curve


def _headline(report: dict[str, Any]) -> dict[str, float]:
    out = {"repetition_rate": report.get("repetition_rate", 0.0)}
    curve = report.get("injection") or []
    if curve and "mean_changed_after" in curve[0]:
        out["injection_mean_changed"] = sum(r["mean_changed_after"] for r in curve) / len(curve)
    if curve and "recovery_rate" in curve[0]:
        out["injection_recovery_rate"] = sum(r["recovery_rate"] for r in curve) / len(curve)
    return out
