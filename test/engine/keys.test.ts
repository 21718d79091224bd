/**
 * A step's key is sha256 of its trace's canonical JSON, and every stored record holds that text: the
 * text `traceText` writes must stay byte for byte what canonicalJson gives for the whole trace, or every
 * cached step of every store would run again after an upgrade.
 */
import { describe, expect, it } from "vitest"
import { canonicalJson } from "../../cache/hash.ts"
import { keyOf, traceText } from "../../engine/keys.ts"
import type { Trace } from "../../engine/keys.ts"

const h = (c: string) => c.repeat(64)

const traces: Array<Trace> = [
  { kind: "noop", version: 1, params: {}, inputs: {} },
  { kind: "sft-lora", version: 3, params: { lora: { r: 16, alpha: 32, targets: ["q_proj", "v_proj"] }, lr: 2e-4, neftune: null }, inputs: { model: h("a"), data: h("b") } },
  // keys out of order at every level, a param left undefined (absent from the text), a unicode kind
  { kind: "dédup-ü", version: 12, params: { z: 1, a: { y: [3, { b: 2, a: 1 }], x: undefined }, m: "tab\tand \"quote\"" }, inputs: { z: [h("c"), h("d")], a: h("e") } },
  // numbers JSON cannot write, as canonicalJson spells them
  { kind: "k", version: 0, params: { inf: Infinity, nan: NaN, neg: -0, big: 1e21 }, inputs: { parts: [] } }
]

describe("trace text", () => {
  it("is canonical JSON as it always was: keys sorted at every level, undefined left out", () => {
    expect(traceText(traces[2]!)).toBe(
      `{"inputs":{"a":"${h("e")}","z":["${h("c")}","${h("d")}"]},"kind":"dédup-ü",` +
        `"params":{"a":{"y":[3,{"a":1,"b":2}]},"m":"tab\\tand \\"quote\\"","z":1},"version":12}`
    )
    expect(canonicalJson(["a", "b\"c", "é", 1, null])).toBe(`["a","b\\"c","é",1,null]`)
    expect(canonicalJson([Infinity, "x"])).toBe(`["Infinity","x"]`)
  })

  it("is the canonical JSON of the whole trace, byte for byte", () => {
    for (const t of traces) {
      expect(traceText(t)).toBe(canonicalJson(t))
      expect(keyOf(traceText(t))).toBe(keyOf(canonicalJson(t)))
    }
  })
})
