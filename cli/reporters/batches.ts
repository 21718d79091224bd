/**
 * Lines written in batches: one `write` for up to 512 lines, or for what one turn of the event loop
 * added. A rerun of 10,000 steps prints 20,000 lines in one synchronous stretch, and a write call per
 * line cost more than its whole plan. `flush` writes what is pending at once (before a line that must
 * not wait, at the end of a run).
 */
export const lineBatches = (write: (text: string) => void, max = 512) => {
  let pending: Array<string> = []
  const flush = () => {
    if (pending.length === 0) return
    const text = pending.join("")
    pending = []
    write(text)
  }
  /** `text`: one or more whole lines, newlines included */
  const add = (text: string) => {
    if (pending.length === 0) setImmediate(flush)
    pending.push(text)
    if (pending.length >= max) flush()
  }
  return { add, flush }
}
