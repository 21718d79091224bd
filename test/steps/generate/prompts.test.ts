/**
 * generate's prompt helpers (steps/generate/prompts.py), run in the project's Python without torch: how
 * textbook seeds are drawn, how templates are checked, how a judge's reply becomes a score, how a
 * GGUF's digest is remembered.
 */
import * as path from "node:path"
import { expect, it } from "vitest"
import { projectRoot } from "../../../engine/python.ts"
import { python } from "../train/helpers.ts"

const run = async (code: string): Promise<any> =>
  JSON.parse((await python(["-c", `import sys, json; sys.path.insert(0, ${JSON.stringify(path.join(projectRoot, "steps", "generate"))})\n${code}`])).trim().split("\n").at(-1)!)

it("textbook seeds: each topic draws its own (audience, style) pairs, so changing one topic leaves the others' alone", async () => {
  const r = await run(`
import prompts
a = prompts.textbook_seeds(["gravity", "atoms", "loops"], ["kids", "adults"], ["story", "textbook", "dialogue"], 2, 0)
b = prompts.textbook_seeds(["gravity", "cells", "loops"], ["kids", "adults"], ["story", "textbook", "dialogue"], 2, 0)
c = prompts.textbook_seeds(["gravity", "atoms", "loops"], ["kids", "adults"], ["story", "textbook", "dialogue"], 2, 1)
print(json.dumps({"a": a, "b": b, "c": c}))
`)
  expect(r.a).toHaveLength(6)
  const of = (items: Array<any>, topic: string) => items.filter((i) => i.topic === topic)
  expect(of(r.b, "gravity")).toEqual(of(r.a, "gravity"))
  expect(of(r.b, "loops")).toEqual(of(r.a, "loops"))
  expect(of(r.b, "cells")).toHaveLength(2)
  // two distinct pairs per topic
  for (const t of ["gravity", "atoms", "loops"]) expect(new Set(of(r.a, t).map((i) => `${i.audience}/${i.style}`)).size).toBe(2)
  expect(r.c).not.toEqual(r.a) // another seed, other draws
})

it("templates with an unknown placeholder fail naming the param; judge replies become scores", async () => {
  const r = await run(`
import prompts
errors = []
def fail(message, code=2):
    errors.append(message)
    raise SystemExit(code)
prompts.fail = fail
for args in [("template", "About {subject}", "textbook"), ("judgeTemplate", "{prompt} {answer}", "judge"), ("template", "{topic", "textbook")]:
    try:
        prompts.check_template(*args)
    except SystemExit:
        pass
ok = prompts.check_template("template", "{topic}: {{literal}} for {audience} ({style})", "textbook")
scores = [prompts.parse_score(t) for t in ["7", " Score: 8/10", "9.5 out of 10", "no idea", "3. Because"]]
print(json.dumps({"errors": errors, "ok": ok, "scores": scores, "task": prompts.first_paragraph("Task: Sort a list.\\n\\nExplanation follows")}))
`)
  expect(r.errors[0]).toMatch(/param template: unknown placeholder \{subject\}; this template may use \{topic\}, \{audience\}, \{style\}/)
  expect(r.errors[1]).toMatch(/param judgeTemplate: unknown placeholder \{answer\}/)
  expect(r.errors[2]).toMatch(/param template: not a valid template/)
  expect(r.ok).toContain("{topic}")
  expect(r.scores).toEqual([7, 8, 9.5, null, 3])
  expect(r.task).toBe("Sort a list.")
})

it("preferences with rank judge: the best-scored answer is chosen, the worst rejected, a tie or no score drops the prompt", async () => {
  // the teacher is a table here: answers per prompt in sample order, the judge's reply per answer
  const r = await run(`
import worker
from request_store import Response
answers = {"p1": ["short", "a longer answer", "mid one"], "p2": ["same", "same too", "same"], "p3": ["x", "y", "z"]}
scores = {"short": "3", "a longer answer": "Score: 9", "mid one": "5", "same": "4", "same too": "4", "x": "?", "y": "7", "z": "none"}
class Table:
    def __init__(self):
        self.n = {}
    def answer(self, reqs):
        out = []
        for r in reqs:
            content = r.messages[-1][1]
            if content.startswith("Rate"):
                text = scores[content.split("Answer: ")[1].split("\\n")[0]]
            else:
                i = self.n.get(content, 0)
                self.n[content] = i + 1
                text = answers[content][i]
            out.append(Response(text, 1, 1, "stop"))
        return out
modes = worker.Modes(worker.GenerateConfig(mode="preferences", samples=3, rank="judge"), Table())
print(json.dumps([rows for rows, _ in modes.preferences([{"prompt": "p1"}, {"prompt": "p2"}, {"prompt": "p3"}])]))
`)
  expect(r[0]).toEqual([{ prompt: "p1", chosen: "a longer answer", rejected: "short" }])
  expect(r[1]).toEqual([]) // every answer scored 4: no preference
  expect(r[2]).toEqual([]) // one answer scored: nothing to rank it against
})

it("a GGUF's sha256 is remembered per file: the same file is read once, a replaced one is hashed again", async () => {
  const r = await run(`
import hashlib, os, tempfile
import request_store
d = tempfile.mkdtemp()
f = os.path.join(d, "model.gguf")
with open(f, "wb") as out:
    out.write(b"GGUF" + b"x" * 5000)
cache = request_store.RequestCache(os.path.join(d, "requests"))
reads = []
real_open = open
def counting_open(path, *a, **k):
    if path == f:
        reads.append(path)
    return real_open(path, *a, **k)
request_store.open = counting_open
first = cache.file_sha256(f)
second = cache.file_sha256(f)
with real_open(f + ".new", "wb") as out:
    out.write(b"GGUF" + b"y" * 5000)  # same size, new content, put in place as a copy or download would
os.replace(f + ".new", f)
third = cache.file_sha256(f)
expected = hashlib.sha256(real_open(f, "rb").read()).hexdigest()
print(json.dumps({"first": first == hashlib.sha256(b"GGUF" + b"x" * 5000).hexdigest(), "reads": len(reads),
                  "third": third == expected and third != first}))
`)
  expect(r).toEqual({ first: true, reads: 2, third: true })
})
