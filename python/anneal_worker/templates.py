"""Prompt templates the fine-tuning workers share: Alpaca for instruction rows, chat templates for
conversations. Every row format becomes TRL's prompt-completion shape, so the loss can be computed on
the completion only."""
from __future__ import annotations

from typing import Any

# Alpaca's two prompts (tatsu-lab/stanford_alpaca, train.py), as Platypus used them.
ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)

# ChatML, for tokenizers that bring no chat template of their own (e.g. one trained by the tokenizer step).
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def alpaca_prompt(instruction: str, input: str | None = None) -> str:
    if input:
        return ALPACA_WITH_INPUT.format(instruction=instruction, input=input)
    return ALPACA_NO_INPUT.format(instruction=instruction)


def to_prompt_completion(fmt: str, row: dict[str, Any], template: str) -> dict[str, Any]:
    """One row of any supported format -> {prompt, completion} (strings, or message lists for chat).

    - instruction: the Alpaca prompt (template "alpaca") or a user turn (template "chat");
    - prompt-completion: as it is;
    - messages: everything before the last assistant turn is the prompt, that turn the completion;
    - text: {text}, trained on every token.
    """
    if fmt == "instruction":
        if template == "alpaca":
            return {"prompt": alpaca_prompt(row["instruction"], row.get("input")), "completion": row["output"]}
        user = row["instruction"] + ("\n\n" + row["input"] if row.get("input") else "")
        return {"prompt": [{"role": "user", "content": user}], "completion": [{"role": "assistant", "content": row["output"]}]}
    if fmt == "messages":
        msgs = row["messages"]
        last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
        if last is None:
            raise ValueError("a conversation needs at least one assistant turn")
        return {"prompt": msgs[:last], "completion": [msgs[last]]}
    if fmt == "prompt-completion":
        return {"prompt": row["prompt"], "completion": row["completion"]}
    return {"text": row["text"]}
