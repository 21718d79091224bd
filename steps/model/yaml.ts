/**
 * A small YAML reader for mergekit configs: block mappings and sequences (including the compact
 * `key:\n- item` form), flow collections (`[0, 24]`, `{weight: 0.5}`), quoted and plain scalars, and
 * comments. That is all mergekit's documented configs use; anchors, tags, multi-documents and block
 * scalars are refused with the line number rather than misread. (No YAML package ships with anneal,
 * and this keeps it that way.)
 */

export class YamlError extends Error {
  readonly _tag = "YamlError"
  constructor(readonly line: number, detail: string) {
    super(`YAML line ${line}: ${detail}`)
  }
}

interface Line {
  readonly indent: number
  readonly text: string
  readonly no: number
}

export type YamlValue = null | boolean | number | string | Array<YamlValue> | { [key: string]: YamlValue }

const stripComment = (s: string): string => {
  let quote: string | undefined
  for (let i = 0; i < s.length; i++) {
    const c = s[i]
    if (quote !== undefined) {
      if (c === quote) {
        if (quote === "'" && s[i + 1] === "'") i++
        else quote = undefined
      } else if (c === "\\" && quote === '"') i++
    } else if (c === "'" || c === '"') {
      if (i === 0 || /[\s:[{,-]/.test(s[i - 1]!)) quote = c
    } else if (c === "#" && (i === 0 || /\s/.test(s[i - 1]!))) return s.slice(0, i)
  }
  return s
}

const keyPattern = /^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s[\]{},#&*!|>'"%@`][^#]*?)\s*:(?:\s+|$)/

export const parseYaml = (source: string): YamlValue => {
  const lines: Array<Line> = []
  source.split(/\r?\n/).forEach((raw, i) => {
    if (raw.includes("\t") && /^\s*\t/.test(raw)) throw new YamlError(i + 1, "tabs cannot indent YAML")
    const text = stripComment(raw).trimEnd()
    if (text.trim() === "" || text.trim() === "---") return
    if (text.trim() === "...") return
    lines.push({ indent: text.length - text.trimStart().length, text: text.trim(), no: i + 1 })
  })
  if (lines.length === 0) return null
  const p = new Parser(lines)
  const v = p.block(lines[0]!.indent)
  if (p.pos < lines.length) throw new YamlError(lines[p.pos]!.no, "unexpected indentation")
  return v
}

const isSeqItem = (t: string): boolean => t === "-" || t.startsWith("- ")

class Parser {
  pos = 0
  constructor(private readonly lines: Array<Line>) {}

  block(indent: number): YamlValue {
    const line = this.lines[this.pos]!
    if (isSeqItem(line.text)) return this.sequence(indent)
    if (keyPattern.test(line.text)) return this.mapping(indent)
    this.pos++
    return scalarOrFlow(line.text, line.no)
  }

  sequence(indent: number): Array<YamlValue> {
    const out: Array<YamlValue> = []
    while (this.pos < this.lines.length) {
      const line = this.lines[this.pos]!
      if (line.indent !== indent || !isSeqItem(line.text)) break
      const rest = line.text.slice(1).trimStart()
      if (rest === "") {
        this.pos++
        const next = this.lines[this.pos]
        out.push(next !== undefined && next.indent > indent ? this.block(next.indent) : null)
      } else if (keyPattern.test(rest) || isSeqItem(rest)) {
        // "- key: v" opens a mapping whose keys line up with "key"
        const col = indent + (line.text.length - rest.length)
        this.lines[this.pos] = { indent: col, text: rest, no: line.no }
        out.push(this.block(col))
      } else {
        this.pos++
        out.push(scalarOrFlow(rest, line.no))
      }
    }
    return out
  }

  mapping(indent: number): { [key: string]: YamlValue } {
    const out: { [key: string]: YamlValue } = {}
    while (this.pos < this.lines.length) {
      const line = this.lines[this.pos]!
      if (line.indent !== indent || isSeqItem(line.text)) break
      const m = keyPattern.exec(line.text)
      if (m === null) throw new YamlError(line.no, `expected "key: value", got ${JSON.stringify(line.text)}`)
      const key = unquote(m[1]!, line.no)
      if (Object.hasOwn(out, key)) throw new YamlError(line.no, `duplicate key "${key}"`)
      const rest = line.text.slice(m[0].length).trim()
      this.pos++
      if (rest !== "") {
        out[key] = scalarOrFlow(rest, line.no)
        continue
      }
      const next = this.lines[this.pos]
      if (next !== undefined && next.indent > indent) out[key] = this.block(next.indent)
      else if (next !== undefined && next.indent === indent && isSeqItem(next.text)) out[key] = this.sequence(indent)
      else out[key] = null
    }
    return out
  }
}

const unquote = (s: string, no: number): string => {
  if (s.startsWith("'")) return s.slice(1, -1).replace(/''/g, "'")
  if (s.startsWith('"')) {
    try {
      return JSON.parse(s) as string
    } catch {
      throw new YamlError(no, `bad double-quoted string ${s}`)
    }
  }
  return s
}

const scalarOrFlow = (text: string, no: number): YamlValue => {
  const c = text[0]
  if (c === "&" || c === "*" || c === "!" || c === "|" || c === ">" || c === "%" || c === "@" || c === "`") {
    throw new YamlError(no, `unsupported YAML feature (${c}) in ${JSON.stringify(text)}: write the value plainly`)
  }
  if (c === "[" || c === "{") {
    const f = new Flow(text, no)
    const v = f.value()
    f.ws()
    if (f.i !== text.length) throw new YamlError(no, `unexpected text after a flow collection: ${JSON.stringify(text.slice(f.i))}`)
    return v
  }
  if (c === '"' || c === "'") {
    const f = new Flow(text, no)
    const v = f.quoted()
    f.ws()
    if (f.i !== text.length) throw new YamlError(no, `unexpected text after a quoted string: ${JSON.stringify(text.slice(f.i))}`)
    return v
  }
  return plain(text)
}

const plain = (s: string): YamlValue => {
  if (s === "~" || s === "null" || s === "Null" || s === "NULL") return null
  if (/^(true|True|TRUE)$/.test(s)) return true
  if (/^(false|False|FALSE)$/.test(s)) return false
  if (/^[-+]?\d+$/.test(s)) return Number(s)
  if (/^[-+]?(\.\d+|\d+(\.\d*)?)([eE][-+]?\d+)?$/.test(s)) return Number(s)
  if (/^[-+]?\.(inf|Inf|INF)$/.test(s)) return s.startsWith("-") ? -Infinity : Infinity
  if (/^\.(nan|NaN|NAN)$/.test(s)) return NaN
  return s
}

class Flow {
  i = 0
  constructor(private readonly s: string, private readonly no: number) {}

  ws(): void {
    while (this.i < this.s.length && /\s/.test(this.s[this.i]!)) this.i++
  }

  value(): YamlValue {
    this.ws()
    const c = this.s[this.i]
    if (c === "[") {
      this.i++
      const out: Array<YamlValue> = []
      this.ws()
      if (this.s[this.i] === "]") {
        this.i++
        return out
      }
      for (;;) {
        out.push(this.value())
        this.ws()
        const d = this.s[this.i++]
        if (d === "]") return out
        if (d !== ",") throw new YamlError(this.no, `expected , or ] in ${JSON.stringify(this.s)}`)
      }
    }
    if (c === "{") {
      this.i++
      const out: { [key: string]: YamlValue } = {}
      this.ws()
      if (this.s[this.i] === "}") {
        this.i++
        return out
      }
      for (;;) {
        this.ws()
        const k = this.s[this.i] === '"' || this.s[this.i] === "'" ? this.quoted() : this.token(":")
        this.ws()
        if (this.s[this.i++] !== ":") throw new YamlError(this.no, `expected : after key in ${JSON.stringify(this.s)}`)
        out[String(k)] = this.value()
        this.ws()
        const d = this.s[this.i++]
        if (d === "}") return out
        if (d !== ",") throw new YamlError(this.no, `expected , or } in ${JSON.stringify(this.s)}`)
      }
    }
    if (c === '"' || c === "'") return this.quoted()
    return plain(this.token(""))
  }

  token(extra: string): string {
    const start = this.i
    while (this.i < this.s.length && !",]}".includes(this.s[this.i]!) && !extra.includes(this.s[this.i]!)) this.i++
    const t = this.s.slice(start, this.i).trim()
    if (t === "") throw new YamlError(this.no, `empty value in ${JSON.stringify(this.s)}`)
    return t
  }

  quoted(): string {
    const q = this.s[this.i]!
    let j = this.i + 1
    for (; j < this.s.length; j++) {
      if (q === '"' && this.s[j] === "\\") j++
      else if (this.s[j] === q) {
        if (q === "'" && this.s[j + 1] === "'") j++
        else break
      }
    }
    if (j >= this.s.length) throw new YamlError(this.no, `unterminated string in ${JSON.stringify(this.s)}`)
    const raw = this.s.slice(this.i, j + 1)
    this.i = j + 1
    return unquote(raw, this.no)
  }
}
