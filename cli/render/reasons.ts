/**
 * Staleness reasons, as the engine words them (engine/keys.ts `diffTraces`, the rebuilder, the plan),
 * turned into diff lines a person reads like `git diff`: what the step was built with (-) and what it
 * would be built with now (+). A reason this module does not recognise stays a plain note.
 */
export type ReasonLine =
  | { readonly kind: "removed"; readonly text: string }
  | { readonly kind: "added"; readonly text: string }
  | { readonly kind: "note"; readonly text: string }

const unset = "(unset)"

export const reasonLines = (reason: string): Array<ReasonLine> => {
  // params.lr: 0.0002 -> 0.0001   (either side may be "(unset)")
  let m = /^(params\.[^:]+): (.*) -> (.*)$/.exec(reason)
  if (m !== null) {
    const [, name, before, after] = m as unknown as [string, string, string, string]
    const out: Array<ReasonLine> = []
    if (before !== unset) out.push({ kind: "removed", text: `${name}: ${before}` })
    if (after !== unset) out.push({ kind: "added", text: `${name}: ${after}` })
    return out
  }
  // implementation version 1 -> 2, kind a -> b
  m = /^(implementation version|kind) (\S+) -> (\S+)$/.exec(reason)
  if (m !== null) {
    return [{ kind: "removed", text: `${m[1]} ${m[2]}` }, { kind: "added", text: `${m[1]} ${m[3]}` }]
  }
  // input data changed (3f2a.. -> 9c1d..)   or   (2 -> 3 artifacts, 1 new)
  m = /^input (\S+) changed \((\S+) -> (\S+)\)$/.exec(reason)
  if (m !== null) {
    return [{ kind: "removed", text: `input ${m[1]}: ${m[2]}` }, { kind: "added", text: `input ${m[1]}: ${m[3]}` }]
  }
  m = /^input (\S+) (added|removed)$/.exec(reason)
  if (m !== null) return [{ kind: m[2] === "added" ? "added" : "removed", text: `input ${m[1]}` }]
  return [{ kind: "note", text: reason }]
}

/** `waits for a, b` is shown in the step's header, not among its reasons. */
export const splitWaits = (reasons: ReadonlyArray<string>): { readonly waitsFor: string | undefined; readonly rest: ReadonlyArray<string> } => {
  const w = reasons.find((r) => r.startsWith("waits for "))
  return { waitsFor: w?.slice("waits for ".length), rest: reasons.filter((r) => r !== w) }
}
