"""An lm-eval model scored by llama.cpp itself, for GGUF files (the quantize step's gguf outputs).

lm-eval's own `gguf` model asks llama-server for the prompt's logprobs with echo=true, which llama-server
refuses. This one talks to `llama-loglik` (engine/components/llama-loglik.cpp, built by
`anneal setup --with llama-cpp` against the same llama.cpp as llama-server and llama-quantize): it loads
the GGUF once and, over JSON lines on its stdin and stdout, tokenizes with the GGUF's own tokenizer,
scores continuations (sum of log-probs, and whether each token is the argmax), and decodes greedily.

The harness's request semantics are the ones its Hugging Face model follows (lm_eval TemplateLM):
context and continuation are tokenized together and split (`_encode_pair`), an empty context is scored
after the prefix (BOS) token, a sequence longer than the context window keeps its last tokens, and
`loglikelihood_rolling` scores disjoint windows of the whole text. Generation is greedy (temperature 0),
stopped at the request's `until` strings, the end-of-generation token, or `max_gen_toks`.
"""
from __future__ import annotations

import json
import subprocess
from typing import Any

from lm_eval import utils
from lm_eval.api.model import TemplateLM


class LlamaCppError(RuntimeError):
    pass


class LlamaCppLM(TemplateLM):
    def __init__(self, tool: str, gguf: str, ctx: int = 0, threads: int = 0, log=None) -> None:
        super().__init__()
        self.gguf = gguf
        self.log = log or (lambda line: None)
        argv = [tool, gguf]
        if ctx > 0:
            argv += ["--ctx", str(ctx)]
        if threads > 0:
            argv += ["--threads", str(threads)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, encoding="utf-8", bufsize=1)
        self.info = self._ask({"op": "info"})
        self.n_ctx = int(self.info["n_ctx"])
        self._eot = int(self.info["eos"])
        self._prefix = int(self.info["bos"]) if int(self.info["bos"]) >= 0 else self._eot
        self.add_bos = bool(self.info["add_bos"])

    # --- the tool's protocol ---

    def _died(self) -> LlamaCppError:
        self.proc.wait()
        err = (self.proc.stderr.read() if self.proc.stderr else "").strip().splitlines()
        reason = err[-1] if err else f"exit {self.proc.returncode}"
        return LlamaCppError(reason.removeprefix("llama-loglik: "))

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise self._died() from None
        line = self.proc.stdout.readline()
        if not line:
            raise self._died()
        reply = json.loads(line)
        if "error" in reply:
            raise LlamaCppError(f"llama-loglik: {reply['error']}")
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()

    # --- TemplateLM ---

    @property
    def eot_token_id(self) -> int:
        return self._eot

    @property
    def prefix_token_id(self) -> int:
        return self._prefix

    @property
    def max_length(self) -> int:
        return self.n_ctx

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        # None: what the GGUF's tokenizer does by default (a BOS where its tokenizer config adds one),
        # as the Hugging Face model leaves it to its tokenizer
        add = True if add_special_tokens is None else bool(add_special_tokens)
        if add and self.add_bos and string.startswith(self.tok_decode([self._prefix])):
            add = False  # the string carries its BOS already
        return list(self._ask({"op": "tokenize", "text": string, "add_special": add})["tokens"])

    def tok_decode(self, tokens: list[int], **kwargs) -> str:
        if list(tokens) == [self._prefix] and "bos_text" in self.info:
            return str(self.info["bos_text"])
        return str(self._ask({"op": "detokenize", "tokens": list(tokens)})["text"])

    def _score(self, context: list[int], continuation: list[int]) -> tuple[float, bool]:
        # keep the last n_ctx + 1 tokens (the last one is only predicted), as the harness's HF model does
        continuation = continuation[-self.n_ctx:]
        whole = (context + continuation)[-(self.n_ctx + 1):]
        context = whole[: len(whole) - len(continuation)] or [self._prefix]
        reply = self._ask({"op": "loglik", "context": context, "continuation": continuation})
        return float(reply["logprob"]), bool(reply["greedy"])

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        # grouped by context, so the choices of one question reuse its KV cache in llama-loglik
        order = sorted(range(len(requests)), key=lambda i: requests[i][1])
        out: list[tuple[float, bool] | None] = [None] * len(requests)
        for n, i in enumerate(order):
            key, context, continuation = requests[i]
            out[i] = self._score(list(context), list(continuation))
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, out[i])
            if n % 64 == 0:
                self.log(f"loglikelihood {n}/{len(requests)}")
        return out  # type: ignore[return-value]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        out = []
        for req in requests:
            (text,) = req.args
            windows = map(utils.make_disjoint_window, utils.get_rolling_token_windows(
                token_list=self.tok_encode(text, add_special_tokens=False), prefix_token=self.prefix_token_id,
                max_seq_len=self.n_ctx, context_len=1))
            total = sum(self._score(list(c), list(t))[0] for c, t in windows)
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
            out.append(total)
        return out

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out = []
        for req in requests:
            context, gen_kwargs = req.args
            gen_kwargs = dict(gen_kwargs or {})
            until = gen_kwargs.pop("until", None) or []
            if isinstance(until, str):
                until = [until]
            max_gen = int(gen_kwargs.pop("max_gen_toks", 256))
            tokens = self.tok_encode(context)[-max(1, self.n_ctx - max_gen):]
            text = self._ask({"op": "generate", "tokens": tokens, "max_tokens": max_gen, "until": list(until)})["text"]
            self.cache_hook.add_partial("generate_until", (context, req.args[1]), text)
            out.append(text)
        return out
