"""Reading datasets from the artifact layout and Source files, and turning rows into prompt-completion
examples (python/anneal_worker/datasets.py, templates.py)."""
import gzip
import json

import pytest

from anneal_worker.datasets import read_dataset, write_dataset
from anneal_worker.templates import CHATML, alpaca_prompt, to_prompt_completion


def test_reads_an_artifact_a_gz_file_and_a_directory_of_files(tmp_path):
    write_dataset(str(tmp_path / "art"), "text", [{"text": "a"}, {"text": "b"}])
    assert read_dataset(str(tmp_path / "art"), ("text",), "t") == ("text", [{"text": "a"}, {"text": "b"}])

    with gzip.open(tmp_path / "one.jsonl.gz", "wt") as f:
        f.write(json.dumps({"prompt": "p", "completion": "c"}) + "\n\n")
    assert read_dataset(str(tmp_path / "one.jsonl.gz"), ("prompt-completion",), "t")[1] == [{"prompt": "p", "completion": "c"}]

    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "b.jsonl").write_text(json.dumps({"text": "second"}) + "\n")
    (tmp_path / "dir" / "a.jsonl").write_text(json.dumps({"text": "first"}) + "\n")
    assert [r["text"] for r in read_dataset(str(tmp_path / "dir"), ("text",), "t")[1]] == ["first", "second"]


def test_a_wrong_row_names_the_step_file_and_line(tmp_path, capsys):
    f = tmp_path / "rows.jsonl"
    f.write_text(json.dumps({"instruction": "i", "output": "o"}) + "\n" + json.dumps({"instruction": "i", "output": 3}) + "\n")
    with pytest.raises(SystemExit) as e:
        read_dataset(str(f), ("instruction",), "sft: input 'data'")
    assert e.value.code == 2
    assert f"sft: input 'data': {f}:2: not a instruction row: field 'output' must be a string" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        read_dataset(str(f), ("preference",), "dpo: input 'data'")
    assert "row format is instruction, expected preference" in capsys.readouterr().err


def test_alpaca_template_with_and_without_input():
    row = to_prompt_completion("instruction", {"instruction": "Add.", "input": "2 and 3", "output": "5"}, "alpaca")
    assert row["prompt"].endswith("### Instruction:\nAdd.\n\n### Input:\n2 and 3\n\n### Response:\n")
    assert row["completion"] == "5"
    assert "### Input" not in alpaca_prompt("Say hi.")


def test_chat_rows_split_before_the_last_assistant_turn():
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "u2"}, {"role": "assistant", "content": "a2"}]
    row = to_prompt_completion("messages", {"messages": msgs}, "alpaca")
    assert row == {"prompt": msgs[:4], "completion": [msgs[4]]}
    chat = to_prompt_completion("instruction", {"instruction": "Hi", "output": "Hello"}, "chat")
    assert chat == {"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "Hello"}]}
    with pytest.raises(ValueError):
        to_prompt_completion("messages", {"messages": msgs[:2]}, "alpaca")


def test_chatml_renders_a_conversation():
    from jinja2 import Template

    out = Template(CHATML).render(messages=[{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    assert out == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
