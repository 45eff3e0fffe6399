/**
 * Renders Effect metrics (every `Metric` any package registered) in the Prometheus text exposition
 * format, so packages instrument with plain `Metric.counter(...)` and know nothing about HTTP.
 */
import { Effect, Metric } from "effect"

const sanitize = (name: string) => name.replace(/[^a-zA-Z0-9_:]/g, "_")
const escape = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, "\\\"")
const labels = (attrs: Readonly<Record<string, string>> | undefined, extra: Record<string, string> = {}) => {
  const all = { ...attrs, ...extra }
  const keys = Object.keys(all)
  return keys.length === 0 ? "" : `{${keys.map((k) => `${sanitize(k)}="${escape(all[k]!)}"`).join(",")}}`
}
const num = (v: number | bigint) => (typeof v === "bigint" ? v.toString() : Number.isFinite(v) ? String(v) : v > 0 ? "+Inf" : "-Inf")

export const render = (snapshots: ReadonlyArray<Metric.Metric.Snapshot>): string => {
  const byName = new Map<string, Array<Metric.Metric.Snapshot>>()
  for (const s of snapshots) {
    const name = sanitize(s.id)
    const list = byName.get(name)
    if (list) list.push(s)
    else byName.set(name, [s])
  }
  const out: Array<string> = []
  for (const [name, list] of [...byName.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    const first = list[0]!
    const type = first.type === "Counter" ? "counter" : first.type === "Gauge" ? "gauge" : first.type === "Histogram" ? "histogram" : first.type === "Summary" ? "summary" : "counter"
    if (first.description) out.push(`# HELP ${name} ${first.description.replace(/\n/g, " ")}`)
    out.push(`# TYPE ${name} ${type}`)
    for (const s of list) {
      switch (s.type) {
        case "Counter":
          out.push(`${name}${labels(s.attributes)} ${num(s.state.count)}`)
          break
        case "Gauge":
          out.push(`${name}${labels(s.attributes)} ${num(s.state.value)}`)
          break
        case "Frequency":
          for (const [key, count] of s.state.occurrences) out.push(`${name}${labels(s.attributes, { key })} ${count}`)
          break
        case "Histogram":
          for (const [le, count] of s.state.buckets) out.push(`${name}_bucket${labels(s.attributes, { le: num(le) })} ${count}`)
          out.push(`${name}_bucket${labels(s.attributes, { le: "+Inf" })} ${s.state.count}`)
          out.push(`${name}_sum${labels(s.attributes)} ${num(s.state.sum)}`)
          out.push(`${name}_count${labels(s.attributes)} ${s.state.count}`)
          break
        case "Summary":
          for (const [q, v] of s.state.quantiles) {
            if (v !== undefined) out.push(`${name}${labels(s.attributes, { quantile: String(q) })} ${num(v)}`)
          }
          out.push(`${name}_sum${labels(s.attributes)} ${num(s.state.sum)}`)
          out.push(`${name}_count${labels(s.attributes)} ${s.state.count}`)
          break
      }
    }
  }
  return out.join("\n") + "\n"
}

export const scrape: Effect.Effect<string> = Effect.map(Metric.snapshot, render)
