"""Caption tokenisation for the COCO language metrics: Stanford PTBTokenizer (Java) or a pure-Python fallback.

DriveLM scores language through ``language_evaluation.CocoEvaluator``, which tokenises with the Stanford
PTBTokenizer jar bundled in pycocoevalcap (``java -cp stanford-corenlp-3.4.1.jar ... PTBTokenizer -preserveLines
-lowerCase``) and then drops the punctuation tokens in ``PUNCTUATIONS``. We call the same class, so scores match.

When no ``java`` is on PATH, :func:`python_ptb_tokenize` stands in. It reproduces what the PTB tokenizer does to
DriveLM-style text (lower case; ``n't``/``'s`` clitics split; brackets become ``-lrb-`` etc., which PTB lower-cases
and pycocoevalcap therefore does *not* remove; decimals like ``1088.3``, ``1,000`` and
PTB's ``.2`` in ``caution.2`` kept whole; single letters with a period, ``A.``, kept whole; c-tags split the
way PTB splits them, ``< c1 cam_back ,1088.3,497.5 >``). It is an approximation of a full PTB lexer, so the report
names the tokenizer that produced the numbers; scores from the fallback are for development, not for comparison.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from typing import Literal

TokenizerName = Literal["auto", "ptb", "python"]

# pycocoevalcap.tokenizer.ptbtokenizer.PUNCTUATIONS: tokens removed after tokenisation (case-sensitive, so the
# lower-cased bracket tokens survive).
PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}

# Alternatives in priority order. The c-tag rule mirrors PTB's output on "<c1,CAM_BACK,1088.3,497.5>": the id, the
# camera and the comma-led number run are separate tokens between the angle brackets.
# PTB splits the period off an abbreviation when a capitalised sentence-initial word follows ("A. The ego ...").
_SENTENCE_START = "|".join(
    [
        "The",
        "This",
        "These",
        "That",
        "Those",
        "Then",
        "There",
        "It",
        "Its",
        "I",
        "We",
        "He",
        "She",
        "They",
        "But",
        "And",
        "In",
        "On",
        "If",
        "So",
        "What",
        "When",
        "Where",
        "Which",
        "Who",
        "How",
    ]
)

_TOKEN_RE = re.compile(
    r"""
    (?P<ctag><)(?P<cid>c\d+),(?P<cam>cam_[a-z_]+)(?P<xy>(?:,\d+(?:\.\d+)?)+)(?P<close>>)
  | (?P<number>(?:(?<![\w-])-)?\d+(?:[.,]\d+)+)           # 1088.3, -0.49, 1,000 whole; "5.5m" -> 5.5 m
  | (?P<lead>[.:]\d+(?:[.,]\d+)*)                      # PTB reads ".2" / ":1" glued to a digit as a number
  | (?P<abbrev>[a-z](?:\.[a-z])*\.(?=\s|$)(?!\s+(?-i:{_SENTENCE_START})\b))  # u.s.a., option letters "A." "B."
  | (?P<stem>[a-z0-9_]+(?:-[a-z0-9_]+)*?)(?=n't\b)     # "is" of "isn't", "ca" of "can't"
  | (?P<neg>n't\b)
  | (?P<clitic>'(?:s|re|ve|ll|d|m)\b)
  | (?P<word>[a-z0-9_]+(?:(?:[-/]|\.(?=[a-z]))[a-z0-9_]+)*)  # words, compounds, x1, "street.in" (no space)
  | (?P<ellipsis>\.\.\.|--)
  | (?P<quote>")
  | (?P<other>\S)
    """.replace("{_SENTENCE_START}", _SENTENCE_START),
    re.VERBOSE | re.IGNORECASE,
)


def _python_tokens(text: str) -> list[str]:
    tokens: list[str] = []
    quote_open = False
    # Match on the original text (the abbreviation rule looks at capitals) and lower-case the tokens, as PTB does.
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup
        if m.group("ctag") is not None:
            tokens += ["<", m.group("cid").lower(), ",", m.group("cam").lower(), m.group("xy"), ">"]
        elif kind == "quote":
            # PTB turns straight double quotes into `` (opening) and '' (closing); both are then removed.
            tokens.append("''" if quote_open else "``")
            quote_open = not quote_open
        elif kind == "other":
            tokens.append(_BRACKETS.get(m.group(), m.group()))
        else:
            tokens.append(m.group().lower())
    return tokens


def python_ptb_tokenize(text: str) -> str:
    """Pure-Python approximation of pycocoevalcap's PTB tokenisation of one caption (space-joined tokens)."""
    return " ".join(t for t in _python_tokens(text.replace("\n", " ")) if t not in PUNCTUATIONS)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the Java tokenizer's 'PTBTokenizer tokenized N tokens' line, which goes straight to fd 2."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def java_available() -> bool:
    return shutil.which("java") is not None


def resolve_tokenizer(name: TokenizerName) -> Literal["ptb", "python"]:
    """``auto`` picks the Java PTB tokenizer when ``java`` is on PATH and the Python fallback otherwise."""
    if name == "auto":
        return "ptb" if java_available() else "python"
    if name == "ptb" and not java_available():
        raise RuntimeError("the PTB tokenizer needs 'java' on PATH (install a JRE, or use the 'python' tokenizer)")
    return name


def tokenize_captions(
    captions: Mapping[object, Sequence[str]], tokenizer: Literal["ptb", "python"]
) -> dict[object, list[str]]:
    """Tokenise ``{key: [caption, ...]}`` like pycocoevalcap's ``PTBTokenizer.tokenize`` (same keys, same order)."""
    if tokenizer == "python":
        return {k: [python_ptb_tokenize(c) for c in caps] for k, caps in captions.items()}
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    wrapped = {k: [{"caption": c} for c in caps] for k, caps in captions.items()}
    try:
        with _quiet_stderr():
            out = PTBTokenizer().tokenize(wrapped)
    except OSError as exc:
        # PTBTokenizer writes its input file next to the jar, inside site-packages; a read-only install fails here.
        raise RuntimeError(f"the Java PTB tokenizer failed ({exc}); use the 'python' tokenizer instead") from exc
    missing = [k for k in captions if len(out.get(k, [])) != len(captions[k])]
    if missing:
        raise RuntimeError(f"the Java PTB tokenizer returned no output for {len(missing)} captions (is java working?)")
    return out


__all__ = [
    "PUNCTUATIONS",
    "TokenizerName",
    "java_available",
    "python_ptb_tokenize",
    "resolve_tokenizer",
    "tokenize_captions",
]
