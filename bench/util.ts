/** Small helpers shared by the benchmarks: peak RSS sampling and a plain-text table. */

export class PeakRss {
  private peak = process.memoryUsage.rss()
  private readonly timer = setInterval(() => this.sample(), 50)
  sample() {
    this.peak = Math.max(this.peak, process.memoryUsage.rss())
  }
  peakMb() {
    this.sample()
    return this.peak / (1024 * 1024)
  }
  stop() {
    this.sample()
    clearInterval(this.timer)
  }
}

export const printTable = (title: string, rows: ReadonlyArray<Record<string, string | number>>) => {
  console.log(`\n${title}`)
  if (rows.length === 0) return
  const headers = Object.keys(rows[0]!)
  const widths = headers.map((h) => Math.max(h.length, ...rows.map((r) => String(r[h] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`
  console.log(line(headers))
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`)
  for (const r of rows) console.log(line(headers.map((h) => String(r[h] ?? ""))))
}
