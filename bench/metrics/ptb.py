"""PTB tokenisation as pycocoevalcap does it, with one caption per line guaranteed.

pycocoevalcap's PTBTokenizer writes every caption as one line of a file, runs Stanford's PTBTokenizer
with -preserveLines and pairs the output lines with the images by position. The Java tokenizer also
breaks lines at \\r, U+2028, U+2029, \\v, \\f and U+0085, and pycocoevalcap only replaces \\n: a single
carriage return in a reference made one more line, and every later image was scored against another
image's references (surplus lines are silently dropped by its zip). Here every line-breaking character
(and tab) becomes a space first, and the number of lines that come back is checked, so a shift is an
error and never a score. The command, the jar and the punctuation removal are pycocoevalcap's own, so
the tokens are identical to its pipeline's.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

# Everything Java's line reading or Python's splitlines may treat as a line break, tabs, and every other
# control character (NUL, DEL, C1): none is text, and each is one more way for a line to go astray.
_LINE_BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """`text` with every line-breaking or other control character (and tab) replaced by a space."""
    return _LINE_BREAKS.sub(" ", text)


def tokenize(texts: dict[str, list[str]], what: str = "caption") -> dict[str, list[str]]:
    """PTB-tokenise image_id -> texts (lower case, punctuation removed), in the order given.

    Raises RuntimeError naming `what` (caption, reference) when the tokenizer does not return exactly
    one line per text.
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

    flat = [one_line(t) for v in texts.values() for t in v]
    # A blank text (an empty caption is a possible model output) is a line the Java tokenizer may
    # drop; it tokenises to nothing, so it is not sent at all.
    sent = [n for n, t in enumerate(flat) if t.strip()]
    lines = ptb_lines([flat[n] for n in sent]) if sent else []
    if len(lines) != len(sent):
        raise RuntimeError(
            f"the PTB tokenizer returned {len(lines)} line(s) for {len(sent)} {what}(s): the texts no longer "
            f"line up with their images (a character it reads as a line break survived normalisation)")
    tokens = [""] * len(flat)
    for n, line in zip(sent, lines, strict=True):
        tokens[n] = " ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS)
    out: dict[str, list[str]] = {i: [] for i in texts}
    keys = [i for i, v in texts.items() for _ in v]
    for key, text in zip(keys, tokens, strict=True):
        out[key].append(text)
    return out


def ptb_lines(lines: list[str]) -> list[str]:
    """Stanford PTBTokenizer's output lines for `lines` (pycocoevalcap's jar and options)."""
    from pycocoevalcap.tokenizer import ptbtokenizer

    folder = Path(ptbtokenizer.__file__).parent
    with tempfile.TemporaryDirectory(prefix="ptb-") as tmp:
        source = Path(tmp) / "captions.txt"
        source.write_bytes("\n".join(lines).encode())
        # Java's chatter (token counts, "Picked up JAVA_TOOL_OPTIONS") stays off the console; it is
        # kept for the error message when the tokenizer fails.
        done = subprocess.run(["java", "-cp", ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR,
                               "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase",
                               str(source)], cwd=folder, capture_output=True)
    if done.returncode != 0:
        tail = " | ".join(done.stderr.decode(errors="replace").strip().splitlines()[-6:])
        raise RuntimeError(f"the PTB tokenizer (java) exited with status {done.returncode}: {tail}")
    text = done.stdout.decode()
    return (text[:-1] if text.endswith("\n") else text).split("\n")
