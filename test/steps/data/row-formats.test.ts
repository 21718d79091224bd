/**
 * One definition of the row formats for both languages: the JSON shipped beside the Python code is
 * what steps/data/row-formats.ts generates, and the edge cases of format precedence and row checking
 * come out the same through the TS reader, the data workers' reader (steps/data/py/data_io.py) and the
 * training workers' reader (python/anneal_worker/datasets.py).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { execa } from "execa"
import { describe, expect, it } from "vitest"
import { pythonEnvVars, pythonExecutable } from "../../../engine/python.ts"
import { detectFormat, schemaOf } from "../../../steps/data/formats.ts"
import { readRows } from "../../../steps/data/jsonl.ts"
import { rowFormatSpecFile, rowFormatSpecText } from "../../../steps/data/row-formats.ts"
import { tempDir } from "./helpers.ts"

const line = (row: unknown) => Buffer.from(typeof row === "string" ? row : JSON.stringify(row))
const msg = (role: string, content: unknown) => ({ role, content })

/** name -> [lines of the file, outcome]; an outcome is the format, then the first invalid line:field. */
const cases: Record<string, [ReadonlyArray<unknown>, string]> = {
  "messages and prompt/completion": [[{ messages: [msg("user", "q")], prompt: "p", completion: "c" }], "messages"],
  "an empty messages list": [[{ messages: [] }], "messages invalid 1:messages"],
  "messages that are not a list": [[{ messages: "hi" }], "messages invalid 1:messages"],
  "a message with an unknown role": [[{ messages: [msg("bot", "x")] }], "messages invalid 1:messages.0.role"],
  "a message whose content is not text": [[{ messages: [msg("user", 1)] }], "messages invalid 1:messages.0.content"],
  "a prompt/completion row after a messages row": [[{ messages: [msg("user", "q")] }, { prompt: "p", completion: "c" }], "messages invalid 2:messages"],
  "prompt, chosen and rejected": [[{ prompt: "p", chosen: "a", rejected: "b" }], "preference"],
  "preference with a completion too": [[{ prompt: "p", completion: "c", chosen: "a", rejected: "b" }], "preference"],
  "instruction with a text field": [[{ instruction: "i", output: "o", text: "t" }], "instruction"],
  "an instruction whose input is a number": [[{ instruction: "i", input: 3, output: "o" }], "instruction invalid 1:input"],
  "text that is a number": [[{ text: 5 }], "text invalid 1:text"],
  "chosen and rejected without a prompt": [[{ chosen: "a", rejected: "b" }], "none"],
  "a prompt alone": [[{ prompt: "p" }], "none"],
  "a BOM before the first row": [[Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), line({ text: "a" })])], "text"],
  "invalid UTF-8 on the first line": [[Buffer.from([0x7b, 0xff, 0x7d]), { text: "a" }], "text invalid 1:"],
  "NaN, which JSON does not have": [[{ text: "a" }, '{"text": NaN}'], "text invalid 2:"],
  "an array line first": [["[1]", { text: "a" }], "text invalid 1:"]
}

const dir = tempDir("anneal-formats-")
const files = Object.fromEntries(
  Object.entries(cases).map(([name, [lines]], i) => {
    const file = path.join(dir, `case-${i}.jsonl`)
    fs.writeFileSync(file, Buffer.concat(lines.flatMap((l) => [Buffer.isBuffer(l) ? l : line(l), Buffer.from("\n")])))
    return [name, file]
  })
)

/** The outcome through the TS reader, as the data steps read with onInvalid: "skip". */
const tsOutcome = async (file: string): Promise<string> => {
  let format
  try {
    format = await detectFormat(file, { onInvalid: "skip" })
  } catch {
    return "none"
  }
  const reader = readRows(file, schemaOf(format), { onInvalid: "skip", allowEmpty: true })
  await reader.toArray()
  const bad = reader.stats.examples[0]
  return bad === undefined ? format : `${format} invalid ${bad.line}:${bad.field}`
}

const pyScript = `
import contextlib, io, json, sys
from data_io import RowReader, detect_format
from anneal_worker.datasets import read_dataset
from anneal_worker.row_formats import FORMATS

def data_io_outcome(file):
    try:
        fmt = detect_format(file, "skip")
    except SystemExit:
        return "none"
    r = RowReader(file, fmt, "skip")
    try:
        list(r)
    except SystemExit:
        pass
    return fmt + (f" invalid {r.examples[0]['line']}:{r.examples[0]['field']}" if r.examples else "")

def read_dataset_outcome(file):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return read_dataset(file, FORMATS, "t")[0]
    except SystemExit:
        return err.getvalue().strip()

files = json.loads(sys.argv[1])
print(json.dumps({n: [data_io_outcome(f), read_dataset_outcome(f)] for n, f in files.items()}))
`

describe("row formats", () => {
  it("python/anneal_worker/row_formats.json is what the TS schemas generate (npx tsx scripts/gen-row-formats.ts)", () => {
    expect(fs.readFileSync(rowFormatSpecFile, "utf8")).toBe(rowFormatSpecText())
  })

  it("the TS reader gives each edge case its documented outcome", async () => {
    for (const [name, [, want]] of Object.entries(cases)) expect([name, await tsOutcome(files[name]!)]).toEqual([name, want])
  })

  it("both Python readers agree with the TS reader; decode errors name file and line", async () => {
    const pyDir = path.resolve(import.meta.dirname, "../../../steps/data/py")
    const env = { ...process.env, ...pythonEnvVars(), PYTHONPATH: `${pythonEnvVars().PYTHONPATH}:${pyDir}` }
    const res = await execa(pythonExecutable(), ["-c", pyScript, JSON.stringify(files)], { env })
    const out = JSON.parse(res.stdout.trim().split("\n").at(-1)!) as Record<string, [string, string]>
    for (const [name, [, want]] of Object.entries(cases)) {
      const [dataIo, training] = out[name]!
      expect([name, dataIo]).toEqual([name, want])
      // the training reader refuses any invalid line: it names the file and the line
      const [format, invalid] = want.split(" invalid ")
      const expected = want === "none" ? "row format is unknown" : invalid === undefined ? format : `${files[name]}:${invalid.split(":")[0]}:`
      expect([name, training]).toEqual([name, expect.stringContaining(expected!)])
    }
    expect(out["invalid UTF-8 on the first line"]![1]).toBe(`error: t: ${files["invalid UTF-8 on the first line"]}:1: invalid UTF-8 at byte 1 of the line`)
  }, 60_000)
})
