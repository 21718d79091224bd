"""The prompt templates of `generate`, and how each mode turns its seeds into work items.

Every template is a Python format string whose {placeholders} a user may rearrange or drop, but not
invent: an unknown placeholder is a clear error naming the param before anything is loaded.
"""
from __future__ import annotations

import hashlib
import random
import string
from typing import Any

from anneal_worker.protocol import fail

# phi-1.5 style: one seed = topic x audience x style; the teacher writes a section and its exercises.
TEXTBOOK = (
    "Write a section of a textbook about {topic} for {audience}, in the style of {style}. "
    "Explain the key ideas clearly with a concrete example, then end with two exercises and their solutions.\n\n"
)
# self-instruct: a few seed tasks as examples, the teacher writes a new one
SELF_INSTRUCT = (
    "You are asked to come up with a new task for an AI assistant.\n"
    "Here are some example tasks:\n{examples}\n"
    "Write one new task that is different from the examples. Reply with the task only.\n"
)
# evol-instruct ("in-depth evolving"): the teacher rewrites a seed task into a harder one
EVOL_INSTRUCT = (
    "Rewrite the following instruction into a more complex version that needs deeper reasoning, "
    "while staying clear and answerable. Reply with the new instruction only.\n\n"
    "Instruction: {instruction}\n"
)
# distillation: the teacher answers a prompt
RESPONSE = "{prompt}"
# judge for preferences: a score from 1 to 10, the first integer in the reply counts
JUDGE = (
    "Rate the answer to the question below from 1 to 10 for helpfulness and correctness. "
    "Reply with the number only.\n\nQuestion: {prompt}\n\nAnswer: {response}\n\nScore:"
)

PLACEHOLDERS = {
    "textbook": ("topic", "audience", "style"),
    "self-instruct": ("examples",),
    "evol-instruct": ("instruction",),
    "response": ("prompt",),
    "judge": ("prompt", "response"),
}


def check_template(param: str, template: str, kind: str) -> str:
    """The template if its placeholders are all known for `kind`, else a clear error naming the param."""
    allowed = PLACEHOLDERS[kind]
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as e:
        fail(f"generate: param {param}: not a valid template ({e}); write literal braces as {{{{ and }}}}")
    for name in names:
        if name not in allowed:
            fail(f"generate: param {param}: unknown placeholder {{{name}}}; this template may use "
                 + ", ".join("{" + a + "}" for a in allowed))
    return template


def stable_int(*parts: Any) -> int:
    """A 31-bit integer derived from content (seeds for sampling and for picking examples)."""
    h = hashlib.sha256("\0".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


def textbook_seeds(topics: list[str], audiences: list[str], styles: list[str], per_topic: int,
                   seed: int) -> list[dict[str, str]]:
    """Per topic, `per_topic` distinct (audience, style) pairs, drawn from the topic's own RNG: changing one
    topic changes that topic's items only."""
    pairs = [(a, s) for a in audiences for s in styles]
    items = []
    for topic in topics:
        rng = random.Random(stable_int(seed, "textbook", topic))
        chosen = rng.sample(pairs, min(per_topic, len(pairs)))
        items += [{"topic": topic, "audience": a, "style": s} for a, s in chosen]
    return items


def self_instruct_examples(tasks: list[str], index: int, k: int, seed: int) -> str:
    """The numbered example tasks shown for new task number `index` (drawn from its own RNG)."""
    rng = random.Random(stable_int(seed, "self-instruct", index))
    picked = rng.sample(tasks, min(k, len(tasks)))
    return "\n".join(f"{i + 1}. {t}" for i, t in enumerate(picked))


def first_paragraph(text: str) -> str:
    """A generated instruction: the reply up to its first blank line, without a leading list number."""
    para = text.strip().split("\n\n")[0].strip()
    for prefix in ("Task:", "Instruction:", "New task:", "New instruction:"):
        if para.lower().startswith(prefix.lower()):
            para = para[len(prefix):].strip()
    return para


def parse_score(text: str) -> float | None:
    """The first number in a judge's reply, or None."""
    num = ""
    for ch in text:
        if ch.isdigit() or (ch == "." and num and "." not in num):
            num += ch
        elif num:
            break
    try:
        return float(num) if num else None
    except ValueError:
        return None
