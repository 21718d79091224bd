/** Typed arrays that grow by doubling: per-row indexes without a JS object per row. */
export class GrowableInt32 {
  data = new Int32Array(1024)
  length = 0

  push(v: number): void {
    if (this.length === this.data.length) this.reserve(this.length + 1)
    this.data[this.length++] = v
  }

  /** Makes room for `n` values in total. */
  reserve(n: number): void {
    if (n <= this.data.length) return
    const next = new Int32Array(Math.max(n, this.data.length * 2))
    next.set(this.data.subarray(0, this.length))
    this.data = next
  }

  get(i: number): number {
    return this.data[i]!
  }
}
