import * as fs from "node:fs"
import * as path from "node:path"
import * as zlib from "node:zlib"
import { describe, expect, it } from "vitest"
import { Instruction, Messages } from "../../../engine/rows.ts"
import { readRows, readJsonl } from "../../../steps/data/jsonl.ts"
import { writeDataset } from "../../../steps/data/writer.ts"
import { detectFormat } from "../../../steps/data/formats.ts"
import { tempDir, writeJsonl } from "./helpers.ts"

const rows = [
  { instruction: "Add 2 and 2.", output: "4" },
  { instruction: "Name a colour.", input: "", output: "Blue", source: "kept-extra-field" }
]

describe("readRows", () => {
  it("reads plain, gzip and directory datasets alike, keeping extra fields", async () => {
    const dir = tempDir()
    const plain = writeJsonl(path.join(dir, "a.jsonl"), rows)
    const gz = path.join(dir, "b", "part-0.jsonl.gz")
    fs.mkdirSync(path.dirname(gz))
    fs.writeFileSync(gz, zlib.gzipSync(fs.readFileSync(plain)))
    writeJsonl(path.join(dir, "b", "part-1.jsonl"), [rows[0]])
    expect(await readRows(plain, Instruction).toArray()).toEqual(rows)
    expect(await readRows(gz, Instruction).toArray()).toEqual(rows)
    expect(await readRows(path.join(dir, "b"), Instruction).toArray()).toEqual([...rows, rows[0]])
  })

  it("round-trips through a dataset artifact directory and records the format", async () => {
    const dir = tempDir()
    expect(await writeDataset(dir, "instruction", rows)).toBe(2)
    expect(JSON.parse(fs.readFileSync(path.join(dir, "dataset.json"), "utf8"))).toEqual({ format: "instruction", rows: 2 })
    expect(await readRows(dir, Instruction).toArray()).toEqual(rows)
    expect(await detectFormat(dir)).toBe("instruction")
  })

  it("names file:line for malformed JSON", async () => {
    const f = writeJsonl(path.join(tempDir(), "bad.jsonl"), [rows[0], "", '{"instruction": "x", "output": ', rows[1]])
    await expect(readRows(f, Instruction).toArray()).rejects.toThrow(`${f}:3: malformed JSON`)
  })

  it("names file:line and the field for a wrong type", async () => {
    const f = writeJsonl(path.join(tempDir(), "bad.jsonl"), [rows[0], { instruction: 7, output: "x" }])
    await expect(readRows(f, Instruction).toArray()).rejects.toThrow(`${f}:2: field instruction: Expected string`)
    const m = writeJsonl(path.join(tempDir(), "m.jsonl"), [{ messages: [{ role: "bot", content: "hi" }] }])
    await expect(readRows(m, Messages).toArray()).rejects.toThrow(`${m}:1: field messages.0.role:`)
  })

  it("skips and counts invalid lines with onInvalid: skip", async () => {
    const f = writeJsonl(path.join(tempDir(), "bad.jsonl"), [rows[0], "[1,2]", "{oops", { output: "no instruction" }, rows[1]])
    const r = readRows(f, Instruction, { onInvalid: "skip" })
    expect(await r.toArray()).toEqual(rows)
    expect(r.stats.skipped).toBe(3)
    expect(r.stats.examples.map((e) => [e.line, e.field])).toEqual([[2, ""], [3, ""], [4, "instruction"]])
  })

  it("refuses an empty dataset, a missing path and a directory without JSONL", async () => {
    const dir = tempDir()
    const empty = writeJsonl(path.join(dir, "empty.jsonl"), [])
    await expect(readRows(empty, Instruction).toArray()).rejects.toThrow(`${empty}: dataset is empty`)
    const allBad = writeJsonl(path.join(dir, "allbad.jsonl"), ["{", "{"])
    await expect(readRows(allBad, Instruction, { onInvalid: "skip" }).toArray()).rejects.toThrow("all 2 lines were invalid")
    await expect(readJsonl(path.join(dir, "missing.jsonl")).toArray()).rejects.toThrow("missing.jsonl: dataset not found")
    const sub = path.join(dir, "sub")
    fs.mkdirSync(sub)
    await expect(readJsonl(sub).toArray()).rejects.toThrow("no data.jsonl")
  })

  it("treats invalid UTF-8 as an invalid row: file:line by default, counted with onInvalid: skip", async () => {
    const f = path.join(tempDir(), "bytes.jsonl")
    const bad = Buffer.concat([Buffer.from('{"instruction": "caf'), Buffer.from([0xe9]), Buffer.from('", "output": "x"}')])
    fs.writeFileSync(f, Buffer.concat([Buffer.from(JSON.stringify(rows[0]) + "\n"), bad, Buffer.from("\n" + JSON.stringify(rows[1]) + "\n")]))
    await expect(readRows(f, Instruction).toArray()).rejects.toThrow(`${f}:2: invalid UTF-8 at byte 20 of the line`)
    const r = readRows(f, Instruction, { onInvalid: "skip" })
    expect(await r.toArray()).toEqual(rows)
    expect(r.stats.examples).toEqual([{ file: f, line: 2, field: "", reason: "invalid UTF-8 at byte 20 of the line" }])
    // valid multi-byte text split across read chunks is still one valid line
    const long = { instruction: "é".repeat(700_000), output: "ü" }
    const big = writeJsonl(path.join(tempDir(), "big.jsonl"), [long, rows[0]])
    expect(await readRows(big, Instruction).toArray()).toEqual([long, rows[0]])
  })

  it("accepts a UTF-8 BOM at the start of a plain or gzip file", async () => {
    const dir = tempDir()
    const text = "\uFEFF" + rows.map((r) => JSON.stringify(r)).join("\n") + "\n"
    fs.writeFileSync(path.join(dir, "a.jsonl"), text)
    fs.writeFileSync(path.join(dir, "b.jsonl.gz"), zlib.gzipSync(Buffer.from(text)))
    expect(await readRows(path.join(dir, "a.jsonl"), Instruction).toArray()).toEqual(rows)
    expect(await readRows(path.join(dir, "b.jsonl.gz"), Instruction).toArray()).toEqual(rows)
    expect(await detectFormat(path.join(dir, "a.jsonl"))).toBe("instruction")
  })

  it("detects the format past invalid first lines with onInvalid: skip, and names the first line without it", async () => {
    const f = path.join(tempDir(), "first.jsonl")
    fs.writeFileSync(f, Buffer.concat([Buffer.from([0xff, 0x0a]), Buffer.from('{oops\n{"neither": 1}\n' + JSON.stringify(rows[0]) + "\n")]))
    expect(await detectFormat(f, { onInvalid: "skip" })).toBe("instruction")
    await expect(detectFormat(f)).rejects.toThrow(`${f}:1: invalid UTF-8 at byte 0 of the line`)
    const r = readRows(f, Instruction, { onInvalid: "skip" })
    expect(await r.toArray()).toEqual([rows[0]])
    expect(r.stats.skipped).toBe(3)
  })
})
