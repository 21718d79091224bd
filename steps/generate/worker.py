"""generate: synthetic data from a teacher model, as a TRL-format dataset.

Run by the engine as `python steps/generate/worker.py SPEC.json` (see engine/spec.ts).

Modes (each prompt template is a param a user can replace; prompts.py holds the defaults):
- textbook     phi-1.5 style: topic x audience x style seeds -> textbook sections with exercises ({text})
- instructions self-instruct (new tasks from a few seed tasks) or evol-instruct (each seed task rewritten
               into a harder one), each then answered by the teacher ({prompt, completion})
- responses    distillation: the teacher answers a dataset's prompts ({prompt, completion}, or
               {messages} with the answer appended when the input is conversational)
- preferences  `samples` answers per prompt, ranked by a judge (the teacher, with a scoring template) or
               by a rule (longer / shorter), into {prompt, chosen, rejected} for `dpo`

Every request is sampled with its own seed, derived from the step seed and the request's content, and is
answered once: finished requests are checkpointed in the resume directory (a kill -9 then rerun
generates only what is missing) and kept in a content-addressed request cache that outlives the step
(a changed seed topic regenerates that topic's requests only). `maxTokens` caps the completion tokens:
items are kept in order until the budget is spent, then generation stops and says so.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # its sibling modules, also when loaded by path

from anneal_worker.datasets import read_dataset, write_dataset
from anneal_worker.protocol import Worker, config_from_params, fail
from anneal_worker.training import check, check_choices, check_non_negative, check_positive, choice, model_dir_input

import prompts  # noqa: E402
from backends import EndpointBackend, GenerateError, TransformersBackend, VllmBackend
from server import LlamaServer, context_length, find_gguf, server_identity
from request_store import Request, RequestCache, ResumeLog, Response

WHO = "generate"
MODES = ("textbook", "instructions", "responses", "preferences")


@dataclass
class GenerateConfig:
    # --- what to generate ---
    mode: str = choice("textbook", MODES)
    # the mode's prompt template ("" = the default in prompts.py); placeholders as documented per mode
    template: str = ""
    # instructions mode: how each generated task is answered ({prompt})
    response_template: str = ""
    # preferences with rank judge: how the judge scores an answer ({prompt}, {response})
    judge_template: str = ""
    # a system message sent before every prompt ("" = none)
    system_prompt: str = ""
    # textbook: seed topics (or the data input's text rows), audiences and styles
    topics: list[str] = field(default_factory=list)
    audiences: list[str] = field(default_factory=lambda: ["high school students", "college students", "curious adults"])
    styles: list[str] = field(default_factory=lambda: ["a textbook", "a story", "a dialogue between a teacher and a student"])
    # textbook: (audience, style) pairs drawn per topic
    per_topic: int = 1
    # textbook: each row's text starts with the prompt (a base-model teacher continuing a template's opening)
    keep_prompt: bool = False
    # instructions: seed tasks (or the data input's rows), the method, how many new tasks (self-instruct; 0 = as many as seeds)
    seed_tasks: list[str] = field(default_factory=list)
    method: str = choice("self-instruct", ("self-instruct", "evol-instruct"))
    count: int = 0
    examples_per_prompt: int = 3
    # preferences: answers per prompt, and how they are ranked
    samples: int = 2
    rank: str = choice("judge", ("judge", "longer", "shorter"))

    # --- sampling ---
    max_new_tokens: int = 256
    temperature: float = 0.8
    top_p: float = 0.95
    # a budget of completion tokens for the whole step (0 = none): generation stops cleanly when spent
    max_tokens: int = 0

    # --- backend ---
    backend: str = choice("transformers", ("transformers", "vllm", "openai", "llama-server"))
    # openai: the API root as OpenAI clients take it (e.g. http://127.0.0.1:8080/v1), the model name there
    base_url: str = ""
    api_model: str = ""
    api: str = choice("chat", ("chat", "completions"))
    # openai: the environment variable holding the API key ("" = send none); the key never enters params
    api_key_env: str = ""
    concurrency: int = 4
    # llama-server: CPU slots claimed (the server's threads are the slots granted)
    server_threads: int = 2
    max_retries: int = 5
    timeout_seconds: float = 120.0
    retry_base_seconds: float = 1.0
    # the content-addressed request cache ("" = STORE/requests beside the resume dir); off with request_cache false
    request_cache: bool = True
    request_cache_dir: str = ""
    allow_pickle: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        check_choices(WHO, self)
        check_positive(WHO, self, "per_topic", "examples_per_prompt", "max_new_tokens", "concurrency", "timeout_seconds",
                       "server_threads")
        check_non_negative(WHO, self, "count", "max_tokens", "max_retries", "retry_base_seconds", "temperature")
        check(0 < self.top_p <= 1, f"{WHO}: param topP must be in (0, 1]")
        check(self.samples >= 2 or self.mode != "preferences", f"{WHO}: param samples must be at least 2 for preferences")


# ----------------------------------------------------------------------------------------------
# Inputs

def prompt_of(fmt: str, row: dict[str, Any]) -> str:
    if fmt == "text":
        return row["text"]
    if fmt == "prompt-completion" or fmt == "preference":
        return row["prompt"]
    if fmt == "instruction":
        return row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
    raise AssertionError(fmt)


def read_seeds(worker: Worker, accept: tuple[str, ...]) -> tuple[str | None, list[dict[str, Any]]]:
    path = worker.inputs.get("data")
    if not path:
        return None, []
    return read_dataset(path, accept, f"{WHO}: input 'data'")


def model_hash(worker: Worker, model_dir: str) -> str:
    """The model's content hash: the engine's, else (a worker started by hand) a hash of its files."""
    given = (worker.spec.get("inputHashes") or {}).get("model")
    if isinstance(given, str) and given:
        return given
    h = hashlib.sha256()
    for name in sorted(os.listdir(model_dir)):
        p = os.path.join(model_dir, name)
        if os.path.isfile(p):
            h.update(name.encode() + b"\0")
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# Answering requests: resume log, then request cache, then the backend

class Answerer:
    def __init__(self, worker: Worker, identity: dict[str, Any], make_backend: Callable[[], Any],
                 cache: RequestCache, resume: ResumeLog, expected: int) -> None:
        self.worker, self.identity, self.make_backend = worker, identity, make_backend
        self.backend: Any = None
        self.cache, self.resume = cache, resume
        self.expected = expected
        self.finished = 0
        self.counts = {"generated": 0, "cached": 0, "resumed": 0}
        self.generated_tokens = 0
        self.generation_seconds = 0.0

    def answer(self, reqs: list[Request]) -> list[Response]:
        keys = [r.key(self.identity) for r in reqs]
        found: dict[str, Response] = {}
        missing: dict[str, Request] = {}
        for k, r in zip(keys, reqs):
            if k in found or k in missing:
                continue
            if k in self.resume.done:
                found[k] = self.resume.done[k]
                self.counts["resumed"] += 1
            elif (hit := self.cache.get(k)) is not None:
                found[k] = hit
                self.resume.add(k, hit)
                self.counts["cached"] += 1
            else:
                missing[k] = r
        self.finished += len(found)
        if missing:
            if self.backend is None:
                if self.identity["type"] != "openai":
                    self.worker.phase("loading model")
                self.backend = self.make_backend()
                self.worker.phase("generating")
            todo = list(missing.items())
            started = time.monotonic()

            def done(i: int, resp: Response) -> None:
                k = todo[i][0]
                found[k] = resp
                self.cache.put(k, resp)
                self.resume.add(k, resp)
                self.counts["generated"] += 1
                self.generated_tokens += resp.completion_tokens
                self.finished += 1
                self.worker.progress(self.finished, max(self.expected, self.finished), "requests")

            try:
                self.backend.run([r for _, r in todo], done)
            finally:
                self.generation_seconds += time.monotonic() - started
        return [found[k] for k in keys]


# ----------------------------------------------------------------------------------------------
# Modes: each turns a chunk of items into (rows, completion tokens) per item

class Modes:
    def __init__(self, cfg: GenerateConfig, answerer: Answerer) -> None:
        self.cfg, self.ans = cfg, answerer

    def request(self, content: str, tag: str, sample: int = 0, messages: tuple[tuple[str, str], ...] | None = None,
                max_new_tokens: int | None = None, temperature: float | None = None) -> Request:
        cfg = self.cfg
        msgs = messages if messages is not None else (
            (("system", cfg.system_prompt),) if cfg.system_prompt else ()) + (("user", content),)
        return Request(messages=msgs, max_new_tokens=max_new_tokens or cfg.max_new_tokens,
                       temperature=cfg.temperature if temperature is None else temperature, top_p=cfg.top_p,
                       seed=prompts.stable_int(cfg.seed, tag, sample, repr(msgs)))

    def textbook(self, items: list[dict[str, Any]]) -> list[tuple[list[dict[str, Any]], int]]:
        t = self.cfg.template or prompts.TEXTBOOK
        asked = [t.format(**it) for it in items]
        out = []
        for prompt, r in zip(asked, self.ans.answer([self.request(p, "textbook") for p in asked])):
            text = (prompt + r.text).strip() if self.cfg.keep_prompt else r.text.strip()
            out.append(([{"text": text}] if r.text.strip() else [], r.completion_tokens))
        return out

    def responses(self, items: list[dict[str, Any]]) -> list[tuple[list[dict[str, Any]], int]]:
        t = self.cfg.template or prompts.RESPONSE
        reqs = [self.request("", "response", messages=it["messages"]) if it.get("messages")
                else self.request(t.format(prompt=it["prompt"]), "response") for it in items]
        out = []
        for it, r in zip(items, self.ans.answer(reqs)):
            text = r.text.strip()
            if not text:
                out.append(([], r.completion_tokens))
            elif it.get("messages"):
                msgs = [{"role": role, "content": c} for role, c in it["messages"]] + [{"role": "assistant", "content": text}]
                out.append(([{"messages": msgs}], r.completion_tokens))
            else:
                out.append(([{"prompt": it["prompt"], "completion": text}], r.completion_tokens))
        return out

    def instructions(self, items: list[dict[str, Any]]) -> list[tuple[list[dict[str, Any]], int]]:
        cfg = self.cfg
        if cfg.method == "self-instruct":
            t = cfg.template or prompts.SELF_INSTRUCT
            reqs = [self.request(t.format(examples=it["examples"]), "self-instruct", it["index"]) for it in items]
        else:
            t = cfg.template or prompts.EVOL_INSTRUCT
            reqs = [self.request(t.format(instruction=it["instruction"]), "evol-instruct") for it in items]
        tasks = [(prompts.first_paragraph(r.text), r.completion_tokens) for r in self.ans.answer(reqs)]
        rt = cfg.response_template or prompts.RESPONSE
        asked = [(i, task) for i, (task, _) in enumerate(tasks) if task]
        answers = dict(zip([i for i, _ in asked], self.ans.answer([self.request(rt.format(prompt=task), "response")
                                                                    for _, task in asked])))
        out = []
        for i, (task, tokens) in enumerate(tasks):
            a = answers.get(i)
            text = a.text.strip() if a else ""
            out.append(([{"prompt": task, "completion": text}] if text else [], tokens + (a.completion_tokens if a else 0)))
        return out

    def preferences(self, items: list[dict[str, Any]]) -> list[tuple[list[dict[str, Any]], int]]:
        cfg = self.cfg
        t = cfg.template or prompts.RESPONSE
        n = cfg.samples
        reqs = [self.request(t.format(prompt=it["prompt"]), "sample", j) for it in items for j in range(n)]
        resps = self.ans.answer(reqs)
        groups = [resps[i * n:(i + 1) * n] for i in range(len(items))]
        if cfg.rank == "judge":
            jt = cfg.judge_template or prompts.JUDGE
            judged = self.ans.answer([self.request(jt.format(prompt=it["prompt"], response=r.text.strip()), "judge",
                                                   max_new_tokens=min(8, cfg.max_new_tokens), temperature=0.0)
                                      for it, g in zip(items, groups) for r in g])
            scores = [[prompts.parse_score(judged[i * n + j].text) for j in range(n)] for i in range(len(items))]
        else:
            sign = 1 if cfg.rank == "longer" else -1
            scores = [[float(sign * len(r.text.strip())) for r in g] for g in groups]
        out = []
        for it, g, s in zip(items, groups, scores):
            tokens = sum(r.completion_tokens for r in g)
            ranked = [(sc, j) for j, sc in enumerate(s) if sc is not None and g[j].text.strip()]
            if len(ranked) < 2 or max(ranked)[0] == min(ranked)[0]:
                out.append(([], tokens))  # no preference between the answers
                continue
            best = max(ranked, key=lambda x: (x[0], -x[1]))[1]
            worst = min(ranked, key=lambda x: (x[0], x[1]))[1]
            out.append(([{"prompt": it["prompt"], "chosen": g[best].text.strip(), "rejected": g[worst].text.strip()}], tokens))
        return out


# ----------------------------------------------------------------------------------------------

def build_items(cfg: GenerateConfig, worker: Worker) -> tuple[list[dict[str, Any]], str, int]:
    """The mode's work items, the output row format, and the requests each item makes."""
    if cfg.mode == "textbook":
        prompts.check_template("template", cfg.template or prompts.TEXTBOOK, "textbook")
        _, rows = read_seeds(worker, ("text",))
        topics = list(cfg.topics) + [r["text"].strip() for r in rows if r["text"].strip()]
        check(bool(topics), f"{WHO}: mode textbook needs seed topics (param topics, or text rows in input 'data')")
        check(bool(cfg.audiences) and bool(cfg.styles), f"{WHO}: params audiences and styles must not be empty")
        return prompts.textbook_seeds(topics, list(cfg.audiences), list(cfg.styles), cfg.per_topic, cfg.seed), "text", 1
    if cfg.mode == "instructions":
        kind = cfg.method
        prompts.check_template("template", cfg.template or (prompts.SELF_INSTRUCT if kind == "self-instruct" else prompts.EVOL_INSTRUCT), kind)
        prompts.check_template("responseTemplate", cfg.response_template or prompts.RESPONSE, "response")
        fmt, rows = read_seeds(worker, ("instruction", "prompt-completion", "text"))
        tasks = list(cfg.seed_tasks) + [prompt_of(fmt, r) for r in rows] if fmt else list(cfg.seed_tasks)
        tasks = [t for t in tasks if t.strip()]
        check(bool(tasks), f"{WHO}: mode instructions needs seed tasks (param seedTasks, or rows in input 'data')")
        if kind == "evol-instruct":
            return [{"instruction": t} for t in tasks], "prompt-completion", 2
        n = cfg.count or len(tasks)
        return ([{"index": i, "examples": prompts.self_instruct_examples(tasks, i, cfg.examples_per_prompt, cfg.seed)}
                 for i in range(n)], "prompt-completion", 2)
    accept = ("text", "prompt-completion", "instruction") + (("messages",) if cfg.mode == "responses" else ())
    check(bool(worker.inputs.get("data")), f"{WHO}: mode {cfg.mode} needs input 'data' (the prompts to answer)")
    fmt, rows = read_seeds(worker, accept)
    assert fmt is not None
    prompts.check_template("template", cfg.template or prompts.RESPONSE, "response")
    if cfg.mode == "responses":
        if fmt == "messages":
            items = []
            for r in rows:
                msgs = [(m["role"], m["content"]) for m in r["messages"]]
                while msgs and msgs[-1][0] == "assistant":
                    msgs.pop()  # the teacher writes the last answer afresh
                if msgs:
                    items.append({"messages": tuple(msgs)})
            return items, "messages", 1
        return [{"prompt": prompt_of(fmt, r)} for r in rows], "prompt-completion", 1
    if cfg.rank == "judge":
        prompts.check_template("judgeTemplate", cfg.judge_template or prompts.JUDGE, "judge")
    return [{"prompt": prompt_of(fmt, r)} for r in rows], "preference", cfg.samples * (2 if cfg.rank == "judge" else 1)


def main() -> None:
    worker = Worker.from_argv()
    cfg = config_from_params(GenerateConfig, worker.params)

    # --- validate everything before loading a model or sending a request ---
    api_key = None
    if cfg.backend == "openai":
        check(bool(cfg.base_url), f"{WHO}: backend openai needs param baseUrl (the API root, e.g. http://127.0.0.1:8080/v1)")
        check(cfg.base_url.startswith(("http://", "https://")), f"{WHO}: param baseUrl must start with http:// or https://")
        check(bool(cfg.api_model), f"{WHO}: backend openai needs param apiModel (the model's name at the endpoint)")
        if cfg.api_key_env:
            api_key = os.environ.get(cfg.api_key_env)
            check(bool(api_key), f"{WHO}: param apiKeyEnv names the environment variable {cfg.api_key_env}, which is not set")
        model_dir = None
    elif cfg.backend == "llama-server":
        check(not cfg.base_url, f"{WHO}: backend llama-server serves input 'model' itself: leave param baseUrl empty")
        check(bool(os.environ.get("ANNEAL_LLAMA_SERVER")), f"{WHO}: backend llama-server needs llama.cpp: run `npx anneal setup --with llama-cpp`")
        try:
            gguf = find_gguf(WHO, worker.inputs.get("model"))
        except GenerateError as e:
            fail(str(e))
        model_dir = None
    else:
        model_dir = model_dir_input(f"{WHO}: input 'model'", worker.inputs.get("model"), cfg.allow_pickle)
    items, fmt, per_item = build_items(cfg, worker)

    # --- setup: identity of the backend, request cache, resume log ---
    cache_dir = None
    if cfg.request_cache:
        cache_dir = cfg.request_cache_dir or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(worker.resume_dir))), "requests")
    cache = RequestCache(cache_dir)
    endpoint: EndpointBackend | None = None
    served: list[LlamaServer] = []  # the llama-server this step started, if any (stopped in the finally below)
    if cfg.backend == "openai":
        endpoint = EndpointBackend(cfg.base_url, cfg.api_model, cfg.api, api_key, cfg.concurrency, cfg.max_retries,
                                   cfg.timeout_seconds, cfg.retry_base_seconds, lambda m, level: worker.log(m, level))
        identity, make_backend = endpoint.identity, (lambda: endpoint)
    elif cfg.backend == "llama-server":
        gguf_sha = cache.file_sha256(gguf)
        alias = f"gguf-{gguf_sha[:12]}"
        identity = server_identity(gguf_sha, cfg.api)
        worker.log(f"teacher: {gguf} (sha256 {gguf_sha}), served by llama-server as model {alias}")

        def start_server() -> EndpointBackend:
            nonlocal endpoint
            worker.phase("starting llama-server")
            # each slot gets the model's training context, at most 8192 tokens (a 128k-context model's KV
            # cache times the slots would not fit in memory; prompt + maxNewTokens must fit in a slot)
            n_ctx = min(context_length(gguf) or 4096, 8192)
            threads = max(1, int(worker.spec.get("devices", {}).get("cpus", 0) or cfg.server_threads))
            srv = LlamaServer(os.environ["ANNEAL_LLAMA_SERVER"], gguf, alias, threads, cfg.concurrency, n_ctx, cfg.seed,
                              max(120.0, cfg.timeout_seconds), lambda m, level: worker.log(m, level))
            served.append(srv)
            endpoint = EndpointBackend(srv.url, alias, cfg.api, None, cfg.concurrency, cfg.max_retries,
                                       cfg.timeout_seconds, cfg.retry_base_seconds, lambda m, level: worker.log(m, level))
            return endpoint
        make_backend = start_server
    else:
        assert model_dir is not None
        mhash = model_hash(worker, model_dir)
        on_gpu = bool(worker.gpus)
        device = "cuda-bfloat16" if on_gpu else "cpu-float32"
        identity = {"type": cfg.backend, "model": mhash, "device": device}
        make_backend = ((lambda: TransformersBackend(worker, model_dir, cfg.allow_pickle, mhash)) if cfg.backend == "transformers"
                        else (lambda: VllmBackend(worker, model_dir, mhash)))
    resume = ResumeLog(worker.resume_dir)
    answerer = Answerer(worker, identity, make_backend, cache, resume, len(items) * per_item)
    modes = Modes(cfg, answerer)
    run_mode = {"textbook": modes.textbook, "instructions": modes.instructions, "responses": modes.responses,
                "preferences": modes.preferences}[cfg.mode]

    # --- the loop: chunks of items in order, so a token budget stops at the same item every time ---
    worker.phase("generating")
    chunk = max(16, cfg.concurrency * 4) if cfg.max_tokens else max(1, len(items))
    rows: list[dict[str, Any]] = []
    spent = kept = dropped = 0
    budget_hit = False
    try:
        for start in range(0, len(items), chunk):
            for item_rows, tokens in run_mode(items[start:start + chunk]):
                if cfg.max_tokens and spent >= cfg.max_tokens:
                    budget_hit = True
                    break
                spent += tokens
                kept += 1
                dropped += 0 if item_rows else 1
                rows += item_rows
            if budget_hit or (cfg.max_tokens and spent >= cfg.max_tokens and start + chunk < len(items)):
                budget_hit = True
                break
    except GenerateError as e:
        resume.close()
        worker.metric("requests_done", answerer.finished)
        fail(f"{e}; {answerer.finished} finished request(s) are kept for the rerun", code=1)
    finally:
        for srv in served:
            srv.stop()
    resume.close()

    # --- save ---
    worker.phase("saving")
    if budget_hit:
        worker.log(f"maxTokens budget of {cfg.max_tokens} completion tokens spent after {kept} of {len(items)} items: "
                   "generation stopped there", "warn")
    if not rows:
        fail(f"{WHO}: the teacher produced no usable rows ({kept} items, {dropped} empty or without a preference)", code=1)
    write_dataset(worker.output, fmt, rows)
    # provenance: which teacher answered (the request cache's identity of the backend; never a URL or a key)
    with open(os.path.join(worker.output, "teacher.json"), "w", encoding="utf-8") as f:
        json.dump({"backend": cfg.backend, "identity": identity, "mode": cfg.mode}, f, indent=2, sort_keys=True)
        f.write("\n")
    c = answerer.counts
    worker.metric("rows", len(rows))
    worker.metric("items", kept)
    worker.metric("items_dropped", dropped)
    worker.metric("requests_generated", c["generated"])
    worker.metric("requests_cached", c["cached"])
    worker.metric("requests_resumed", c["resumed"])
    worker.metric("completion_tokens", spent)
    worker.metric("generated_tokens", answerer.generated_tokens)
    if answerer.generation_seconds > 0 and answerer.generated_tokens:
        worker.metric("tokens_per_second", round(answerer.generated_tokens / answerer.generation_seconds, 2))
    if cfg.backend in ("openai", "llama-server"):
        worker.metric("endpoint_requests", endpoint.stats.requests if endpoint else 0)
        worker.metric("endpoint_retries", endpoint.stats.retries if endpoint else 0)
    if cfg.backend == "llama-server":
        worker.metric("server_started", 1 if served else 0)
    worker.metric("budget_exhausted", 1 if budget_hit else 0)
    worker.log(f"wrote {len(rows)} {fmt} rows ({c['generated']} requests generated, {c['cached']} from the request "
               f"cache, {c['resumed']} resumed)")


if __name__ == "__main__":
    sys.exit(main())
