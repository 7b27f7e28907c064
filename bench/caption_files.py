"""Read caption files made by other tools: the COCO results format and lmms-eval's per-sample logs.

Accepted (bench score's input; see the README's "Scoring caption files" section):

- COCO results: a JSON list of {"image_id": int or string of digits, "caption": str}; other keys
  (`id`, `score`) are ignored (the format of pycocoevalcap's `loadRes`).
- lmms-eval `--log_samples` logs: JSONL, one record a line (v0.2.4 and later), or one JSON object with
  a `logs` list of records (v0.1 to v0.2.3). The caption is the `pred` and the image the `image_id` of
  the per-metric entries the task's `process_results` returns (`coco_CIDEr`, `flickr_Bleu_4`,
  `nocaps_METEOR`, `coco_passthrough`, ...); every entry of a record must agree, and every record must
  come from one task (one metric prefix).

Every rule broken is a `CaptionFileError` naming the file, the record (line or index) and what was
expected. Nothing is scored from a file that fails.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHOW = 5  # ids named in an error


class CaptionFileError(ValueError):
    """A caption file that cannot be scored; the message names the file, the record and the rule."""


@dataclass
class CaptionFile:
    """One validated file: image id (as the split names it) -> caption, and how it was read."""

    path: Path
    format: str  # "coco-results" | "lmms-eval-jsonl" | "lmms-eval-json"
    sha256: str
    captions: dict[str, str]
    missing: list[str] = field(default_factory=list)  # split images the file has no caption for
    id_kind: str = "image id"  # what the file's ids matched in the split (see match_ids)


def digest(path: Path) -> str:
    """SHA-256 of the file's bytes: part of the scored row's identity."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_records(path: Path) -> tuple[str, list[tuple[str, Any, Any]]]:
    """(format, [(where, image_id, caption)]) of a caption file, ids and captions not yet checked."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CaptionFileError(f"{path}: cannot be read as UTF-8 text ({err})") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return "lmms-eval-jsonl", list(_lmms_records(path, iter(list(_jsonl(path, text)))))
    if isinstance(data, list):
        return "coco-results", _coco_records(path, data)
    if isinstance(data, dict) and isinstance(data.get("logs"), list):
        return "lmms-eval-json", list(_lmms_records(path, ((f"logs[{n}]", r) for n, r in enumerate(data["logs"]))))
    if isinstance(data, dict) and any(isinstance(v, dict) and "pred" in v for v in data.values()):
        # a JSONL file of one record
        return "lmms-eval-jsonl", list(_lmms_records(path, iter([("line 1", data)])))
    raise CaptionFileError(f"{path}: expected a COCO results list [{{\"image_id\", \"caption\"}}], an lmms-eval "
                           f"samples JSONL or an lmms-eval JSON with a 'logs' list; found a {type(data).__name__}")


def _jsonl(path: Path, text: str) -> Iterator[tuple[str, Any]]:
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield f"line {n}", json.loads(line)
        except json.JSONDecodeError as err:
            raise CaptionFileError(f"{path}: line {n} is not JSON ({err.msg}); expected a COCO results JSON list "
                                   "or lmms-eval samples JSONL (one JSON object a line)") from None


def _coco_records(path: Path, data: list) -> list[tuple[str, Any, Any]]:
    out = []
    for n, item in enumerate(data):
        if not isinstance(item, dict) or "image_id" not in item or "caption" not in item:
            found = sorted(item)[:6] if isinstance(item, dict) else type(item).__name__
            raise CaptionFileError(f"{path}: item {n} is not {{\"image_id\", \"caption\"}} (found {found}); "
                                   "expected the COCO results format")
        out.append((f"item {n}", item["image_id"], item["caption"]))
    return out


def _lmms_records(path: Path, records: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, Any, Any]]:
    prefix = None
    for where, record in records:
        if not isinstance(record, dict):
            raise CaptionFileError(f"{path}: {where} is a {type(record).__name__}, expected an lmms-eval sample "
                                   "record (a JSON object)")
        entries = {k: v for k, v in record.items() if isinstance(v, dict) and "pred" in v and "image_id" in v}
        if not entries:
            raise CaptionFileError(f"{path}: {where} has no per-metric entry with 'pred' and 'image_id' (keys: "
                                   f"{sorted(record)[:10]}); expected an lmms-eval caption task's log, e.g. "
                                   "coco_CIDEr: {\"pred\", \"image_id\", ...}")
        prefixes = {k.split("_", 1)[0] for k in entries}
        if prefix is None and len(prefixes) == 1:
            prefix = next(iter(prefixes))
        if prefixes != {prefix}:
            raise CaptionFileError(f"{path}: {where} has entries of task(s) {sorted(prefixes)} after entries of "
                                   f"{prefix!r}: a file must hold one task's samples")
        pairs = {(json.dumps(v["image_id"]), json.dumps(v["pred"])) for v in entries.values()}
        if len(pairs) > 1:
            raise CaptionFileError(f"{path}: {where}: its metric entries disagree on image_id/pred: {sorted(pairs)[:3]}")
        first = next(iter(entries.values()))
        yield where, first["image_id"], first["pred"]


def _norm_id(value: Any) -> str | None:
    """An image id as text: an int, or a string (digits for COCO; any for a file-stem id)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return str(int(value)) if value.strip().isdigit() else value.strip()
    return None


def match_ids(path: Path, ids: list[tuple[str, str]], split_ids: set[str],
              alternates: dict[str, dict[str, str]]) -> tuple[list[str], str]:
    """The split's image ids for the file's ids, and which kind matched: the split's own ids, or one of
    `alternates` (kind -> {other id -> split id}, e.g. a Karpathy `imgid`). Unknown ids are an error
    naming the first few."""
    unknown = [i for _, i in ids if i not in split_ids]
    if not unknown:
        return [i for _, i in ids], "image id"
    for kind, table in alternates.items():
        if all(i in table for _, i in ids):
            return [table[i] for _, i in ids], kind
    where = {i: w for w, i in ids}
    named = ", ".join(f"{i} ({where[i]})" for i in unknown[:SHOW])
    raise CaptionFileError(f"{path}: {len(unknown)} image id(s) are not in the split, e.g. {named}; expected the "
                           f"split's image ids{' or ' + ' or '.join(alternates) if alternates else ''}")


def load_caption_file(path: Path, split_ids: set[str],
                      alternates: dict[str, dict[str, str]] | None = None) -> CaptionFile:
    """Read and validate one caption file against a split; raises CaptionFileError on any bad record."""
    path = Path(path)
    fmt, records = read_records(path)
    if not records:
        raise CaptionFileError(f"{path}: holds no captions")
    ids = []
    for where, raw_id, caption in records:
        image_id = _norm_id(raw_id)
        if image_id is None:
            raise CaptionFileError(f"{path}: {where}: image_id {raw_id!r} is not an integer or a string id")
        if not isinstance(caption, str):
            raise CaptionFileError(f"{path}: {where}: caption of image {raw_id!r} is a {type(caption).__name__}, "
                                   "expected a string")
        if not caption.strip():
            raise CaptionFileError(f"{path}: {where}: caption of image {raw_id!r} is empty")
        ids.append((where, image_id))
    split_of, kind = match_ids(path, ids, split_ids, alternates or {})
    seen: dict[str, str] = {}
    twice = []
    for (where, _), image_id in zip(ids, split_of, strict=True):
        if image_id in seen:
            twice.append(f"{image_id} ({seen[image_id]} and {where})")
        seen.setdefault(image_id, where)
    if twice:
        raise CaptionFileError(f"{path}: {len(twice)} image(s) captioned more than once, e.g. {'; '.join(twice[:SHOW])}")
    captions = {i: str(c) for i, (_, _, c) in zip(split_of, records, strict=True)}
    return CaptionFile(path, fmt, digest(path), captions, sorted(split_ids - set(captions)), kind)
