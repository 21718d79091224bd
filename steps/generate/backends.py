"""The three backends of `generate`. Each answers a list of Requests, calling `done(i, response)` as each
finishes (always from the calling thread), and raises GenerateError with a clear message when it cannot.

- transformers: a local Hugging Face model (safetensors), on the assigned GPU in bf16, else CPU in fp32;
  one prompt at a time, with torch seeded by the request's own seed, so an output depends only on its
  request (not on what else is in the batch).
- vllm: vLLM's offline engine (`LLM.generate` with one `SamplingParams(seed=...)` per request), imported
  only when asked for. Written against vLLM's documented API; not run on the machines this was built on.
- openai: any OpenAI-compatible server (`/v1/chat/completions` or `/v1/completions`), with a
  concurrency limit, retries with exponential backoff and jitter, 429 + Retry-After, and timeouts.
"""
from __future__ import annotations

import email.utils
import http.client
import json
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Callable

from request_store import Request, Response

Done = Callable[[int, Response], None]


class GenerateError(Exception):
    """A failure that ends the step, with the one line the user sees."""


def render_plain(messages: tuple[tuple[str, str], ...]) -> str:
    """A prompt for a model without a chat template: the messages' contents, one paragraph each."""
    return "\n\n".join(content for _, content in messages)


# ----------------------------------------------------------------------------------------------
# transformers

class TransformersBackend:
    def __init__(self, worker: Any, model_dir: str, allow_pickle: bool, model_hash: str) -> None:
        import torch
        from anneal_worker.protocol import device_and_dtype
        from anneal_worker.training import limit_cpu_threads, load_causal_lm, load_tokenizer

        self.torch = torch
        limit_cpu_threads(worker)
        self.device, dtype = device_and_dtype(worker.gpus)
        self.tok = load_tokenizer(model_dir)
        self.model = load_causal_lm(model_dir, dtype, allow_pickle).to(self.device).eval()
        self.context = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        self.identity = {"type": "transformers", "model": model_hash,
                         "device": f"{self.device.type}-{str(dtype).removeprefix('torch.')}"}

    def render(self, messages: tuple[tuple[str, str], ...]) -> str:
        if getattr(self.tok, "chat_template", None):
            return self.tok.apply_chat_template([{"role": r, "content": c} for r, c in messages],
                                                add_generation_prompt=True, tokenize=False)
        return render_plain(messages)

    def run(self, requests: list[Request], done: Done) -> None:
        torch = self.torch
        for i, req in enumerate(requests):
            ids = self.tok(self.render(req.messages), return_tensors="pt").input_ids
            if self.context:
                room = self.context - req.max_new_tokens
                if room < 1:
                    raise GenerateError(f"generate: param maxNewTokens ({req.max_new_tokens}) leaves no room for the "
                                        f"prompt in the model's context of {self.context} tokens")
                ids = ids[:, -room:]  # keep the end of a long prompt: it is what the answer continues
            ids = ids.to(self.device)
            sampling: dict[str, Any] = {"do_sample": False}
            if req.temperature > 0:
                sampling = {"do_sample": True, "temperature": req.temperature, "top_p": req.top_p}
            torch.manual_seed(req.seed)
            with torch.no_grad():
                out = self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=req.max_new_tokens,
                                          pad_token_id=self.tok.pad_token_id, top_k=None, **sampling)
            new = out[0, ids.shape[1]:]
            text = self.tok.decode(new, skip_special_tokens=True)
            done(i, Response(text, int(ids.shape[1]), int(new.shape[0]),
                             "length" if new.shape[0] >= req.max_new_tokens else "stop"))


# ----------------------------------------------------------------------------------------------
# vLLM

class VllmBackend:
    def __init__(self, worker: Any, model_dir: str, model_hash: str) -> None:
        try:
            from vllm import LLM, SamplingParams  # type: ignore[import-not-found]
        except ImportError:
            raise GenerateError("generate: backend vllm needs the vllm package, which is not installed in anneal's "
                                "Python environment (it runs on CUDA GPUs only); use backend transformers, or an "
                                "OpenAI-compatible server (vllm serve) with backend openai") from None
        import torch

        if not (worker.gpus and torch.cuda.is_available()):
            raise GenerateError("generate: backend vllm needs a GPU (none was assigned); use backend transformers on CPU")
        self.SamplingParams = SamplingParams
        self.llm = LLM(model=model_dir, dtype="bfloat16", tensor_parallel_size=len(worker.gpus), seed=0)
        self.tok = self.llm.get_tokenizer()
        self.identity = {"type": "vllm", "model": model_hash, "device": "cuda-bfloat16"}

    def render(self, messages: tuple[tuple[str, str], ...]) -> str:
        if getattr(self.tok, "chat_template", None):
            return self.tok.apply_chat_template([{"role": r, "content": c} for r, c in messages],
                                                add_generation_prompt=True, tokenize=False)
        return render_plain(messages)

    def run(self, requests: list[Request], done: Done) -> None:
        chunk = 256  # checkpoint every chunk; vLLM batches within it
        for start in range(0, len(requests), chunk):
            part = requests[start:start + chunk]
            params = [self.SamplingParams(n=1, temperature=r.temperature, top_p=r.top_p if r.temperature > 0 else 1.0,
                                          max_tokens=r.max_new_tokens, seed=r.seed) for r in part]
            outs = self.llm.generate([self.render(r.messages) for r in part], params, use_tqdm=False)
            for j, out in enumerate(outs):
                c = out.outputs[0]
                done(start + j, Response(c.text, len(out.prompt_token_ids or []), len(c.token_ids),
                                         c.finish_reason or "stop"))


# ----------------------------------------------------------------------------------------------
# OpenAI-compatible endpoint

class EndpointStats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.retries = 0


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds (RFC 9110: a number of seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class EndpointBackend:
    MAX_WAIT = 60.0

    def __init__(self, base_url: str, model: str, api: str, api_key: str | None, concurrency: int,
                 max_retries: int, timeout: float, retry_base: float, log: Callable[[str, str], None]) -> None:
        self.url = base_url.rstrip("/") + ("/chat/completions" if api == "chat" else "/completions")
        self.model, self.api, self.concurrency = model, api, concurrency
        self.max_retries, self.timeout, self.retry_base = max_retries, timeout, retry_base
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.log = log
        self.stats = EndpointStats()
        # where the server is and which key pays are not part of a request's identity; the model is
        self.identity = {"type": "openai", "model": model, "api": api}

    def body(self, req: Request) -> dict[str, Any]:
        b: dict[str, Any] = {"model": self.model, "max_tokens": req.max_new_tokens, "temperature": req.temperature,
                             "seed": req.seed, "stream": False}
        if req.temperature > 0:
            b["top_p"] = req.top_p
        if self.api == "chat":
            b["messages"] = [{"role": r, "content": c} for r, c in req.messages]
        else:
            b["prompt"] = render_plain(req.messages)
        return b

    def parse(self, data: Any) -> Response:
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] if self.api == "chat" else choice["text"]
            if not isinstance(text, str):
                raise TypeError("text is not a string")
        except (KeyError, IndexError, TypeError) as e:
            raise GenerateError(f"generate: {self.url} answered without choices[0]."
                                f"{'message.content' if self.api == 'chat' else 'text'} ({e}): "
                                f"{json.dumps(data)[:200]}") from None
        usage = data.get("usage") or {}
        return Response(text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                        str(choice.get("finish_reason") or "stop"))

    def backoff(self, attempt: int) -> float:
        return min(self.MAX_WAIT, self.retry_base * (2 ** attempt)) * random.uniform(0.5, 1.5)

    def post(self, req: Request, halt: threading.Event) -> Response:
        payload = json.dumps(self.body(req)).encode("utf-8")
        attempt = 0
        while True:
            with self.stats.lock:
                self.stats.requests += 1
            wait_s: float | None = None
            try:
                http_req = urllib.request.Request(self.url, data=payload, headers=self.headers, method="POST")
                with urllib.request.urlopen(http_req, timeout=self.timeout) as resp:
                    raw = resp.read()
                try:
                    return self.parse(json.loads(raw))
                except ValueError:
                    why = f"a response that is not JSON ({raw[:80]!r})"
            except urllib.error.HTTPError as e:
                detail = e.read(300).decode("utf-8", "replace").strip().replace("\n", " ")
                if e.code == 429:
                    why = "HTTP 429 (rate limited)"
                    wait_s = retry_after_seconds(e.headers.get("Retry-After"))
                elif e.code >= 500 or e.code in (408, 409):
                    why = f"HTTP {e.code} {e.reason}"
                else:
                    hint = " (check the API key and apiKeyEnv)" if e.code in (401, 403) else ""
                    raise GenerateError(f"generate: {self.url} answered HTTP {e.code} {e.reason}{hint}: {detail[:200]}") from None
            except (TimeoutError, socket.timeout):
                why = f"no answer within timeoutSeconds ({self.timeout:g} s)"
            except urllib.error.URLError as e:
                reason = e.reason
                why = (f"no answer within timeoutSeconds ({self.timeout:g} s)" if isinstance(reason, (TimeoutError, socket.timeout))
                       else f"cannot connect ({reason})")
            except (ConnectionError, http.client.HTTPException, OSError) as e:
                why = f"connection failed ({type(e).__name__}: {e})"
            if attempt >= self.max_retries:
                raise GenerateError(f"generate: {self.url}: {why}; gave up after {attempt + 1} attempt{'s' if attempt else ''} "
                                    f"(maxRetries {self.max_retries})")
            delay = min(self.MAX_WAIT, wait_s) if wait_s is not None else self.backoff(attempt)
            attempt += 1
            with self.stats.lock:
                self.stats.retries += 1
            self.log(f"{why}; retry {attempt}/{self.max_retries} in {delay:.1f} s", "warn")
            if halt.wait(delay):
                raise GenerateError("generate: stopped")

    def run(self, requests: list[Request], done: Done) -> None:
        halt = threading.Event()  # set when the step fails: requests waiting to retry give up at once
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="generate")
        pending: dict[Future, int] = {}
        queue = iter(range(len(requests)))
        try:
            def submit_next() -> None:
                i = next(queue, None)
                if i is not None:
                    pending[pool.submit(self.post, requests[i], halt)] = i

            for _ in range(self.concurrency):
                submit_next()
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    i = pending.pop(fut)
                    done(i, fut.result())  # a GenerateError propagates: the step fails
                    submit_next()
        finally:
            halt.set()
            pool.shutdown(wait=False, cancel_futures=True)
