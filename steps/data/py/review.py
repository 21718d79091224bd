"""Review categories for flagged (training row, benchmark item) pairs: the Python twin of
steps/data/review.ts (see there for the rules). test/steps/data/fixtures/review-cases.json keeps the two
in agreement."""
from __future__ import annotations

import re
import unicodedata

CATEGORIES = ("duplicate", "gray area", "similar but different")
_PUNCT = re.compile(r"[\W_]+", re.UNICODE)
MAX_TOKENS = 512


def simple_tokens(s: str) -> list[str]:
    """NFKC, lower case, punctuation and symbols removed, split on whitespace (text.ts simpleTokens)."""
    t = unicodedata.normalize("NFKC", s).lower()
    t = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in t)
    return t.split()


def word_edit_distance(a: list[str], b: list[str]) -> int:
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cur[j] = min(prev[j - 1] + (a[i - 1] != b[j - 1]), prev[j] + 1, cur[j - 1] + 1)
        prev = cur
    return prev[len(b)]


def question_similarity(a: str, b: str) -> float:
    ta = simple_tokens(a)[:MAX_TOKENS]
    tb = simple_tokens(b)[:MAX_TOKENS]
    if not ta and not tb:
        return 1.0
    if len(ta) == len(tb) and sorted(ta) == sorted(tb):
        return 1.0
    return 1 - word_edit_distance(ta, tb) / max(len(ta), len(tb))


def _contains_run(hay: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return any(hay[i : i + n] == needle for i in range(len(hay) - n + 1))


def token_f1(a: list[str], b: list[str]) -> float:
    if not a or not b:
        return 0.0
    counts: dict[str, int] = {}
    for t in b:
        counts[t] = counts.get(t, 0) + 1
    common = 0
    for t in a:
        if counts.get(t, 0) > 0:
            common += 1
            counts[t] -= 1
    if common == 0:
        return 0.0
    p, r = common / len(a), common / len(b)
    return 2 * p * r / (p + r)


def answer_agrees(train_answer: str, bench_answer: str | None) -> bool | None:
    if bench_answer is None:
        return None
    ba = simple_tokens(bench_answer)
    if not ba:
        return None
    ta = simple_tokens(train_answer)
    return _contains_run(ta, ba) or token_f1(ta, ba) >= 0.75


def categorize(train_question: str, train_answer: str, bench_question: str, bench_answer: str | None,
               duplicate_similarity: float = 0.9) -> dict:
    qs = round(question_similarity(train_question, bench_question) * 1000) / 1000
    agrees = answer_agrees(train_answer, bench_answer)
    if agrees is False:
        cat = "similar but different"
    elif qs >= duplicate_similarity:
        cat = "duplicate"
    else:
        cat = "gray area"
    return {"category": cat, "questionSimilarity": qs, "answerAgrees": agrees}

