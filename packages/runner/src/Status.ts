/**
 * `mhq-sync status`: per project the last run, cursors, staged counts, what is not yet sent and
 * what is quarantined; plus batches pending/failed and the last error. `--json` for scripts.
 */
import { Database, Staging } from "@mhq-sync/core"
import { Effect } from "effect"

export interface ProjectStatus {
  readonly instance: string
  readonly projectId: number
  readonly projectPath: string
  readonly lastRun: {
    readonly status: string
    readonly startedAt: string
    readonly finishedAt: string | null
    readonly counts: { readonly [kind: string]: number }
    readonly warnings: ReadonlyArray<string>
    readonly errors: ReadonlyArray<string>
  } | null
  readonly cursors: { readonly [kind: string]: string }
  readonly records: { readonly [kind: string]: number }
  readonly unbatched: number
  readonly quarantined: number
}

export interface Report {
  readonly database: { readonly backend: string; readonly target: string }
  readonly batches: Staging.Summary["batches"]
  readonly undelivered: number
  readonly quarantined: number
  readonly projects: ReadonlyArray<ProjectStatus>
  readonly failedBatches: ReadonlyArray<{ readonly id: string; readonly kind: string; readonly records: number; readonly attempts: number; readonly lastError: string | null; readonly updatedAt: string }>
  readonly lastError: string | null
}

export const collect: Effect.Effect<Report, Staging.StagingError, Staging.Staging | Database.DatabaseInfo> = Effect.gen(function*() {
  const staging = yield* Staging.Staging
  const info = yield* Database.DatabaseInfo
  const summary = yield* staging.summary
  const scopes = yield* staging.scopes
  const cursors = yield* staging.cursors()
  const runs = yield* staging.runs({ limit: 1000 })
  const failed = yield* staging.batches({ status: "failed", limit: 50 })

  const key = (instance: string, projectId: number) => `${instance} ${projectId}`
  const lastRun = new Map<string, Staging.Run>()
  for (const r of runs) if (r.projectId !== undefined && !lastRun.has(key(r.instance, r.projectId))) lastRun.set(key(r.instance, r.projectId), r)
  const projects = new Map<string, ProjectStatus>()
  const ensure = (instance: string, projectId: number, projectPath: string): ProjectStatus => {
    const k = key(instance, projectId)
    const existing = projects.get(k)
    if (existing) return existing
    const run = lastRun.get(k)
    const created: ProjectStatus = {
      instance,
      projectId,
      projectPath,
      lastRun: run
        ? {
          status: run.status,
          startedAt: run.startedAt.toISOString(),
          finishedAt: run.finishedAt?.toISOString() ?? null,
          counts: run.counts ?? {},
          warnings: run.warnings ?? [],
          errors: run.errors ?? []
        }
        : null,
      cursors: {},
      records: {},
      unbatched: 0,
      quarantined: 0
    }
    projects.set(k, created)
    return created
  }
  for (const s of scopes) {
    Object.assign(ensure(s.instance, s.projectId, s.projectPath), { records: s.recordsByKind, unbatched: s.unbatched, quarantined: s.quarantined })
  }
  for (const r of lastRun.values()) if (r.projectId !== undefined) ensure(r.instance, r.projectId, r.projectPath ?? String(r.projectId))
  for (const c of cursors) {
    const p = ensure(c.instance, c.projectId, String(c.projectId))
    ;(p.cursors as Record<string, string>)[c.kind] = c.value
  }
  const errors = runs.flatMap((r) => (r.errors ?? []).map((e) => `${r.startedAt.toISOString()} ${r.projectPath ?? r.instance}: ${e}`))
  const lastBatchError = failed[0]?.lastError ? `${failed[0].updatedAt.toISOString()} batch ${failed[0].id}: ${failed[0].lastError}` : null
  return {
    database: { backend: info.backend, target: info.target },
    batches: summary.batches,
    undelivered: summary.undelivered,
    quarantined: summary.quarantined,
    projects: [...projects.values()].sort((a, b) => a.instance.localeCompare(b.instance) || a.projectPath.localeCompare(b.projectPath)),
    failedBatches: failed.map((b) => ({ id: b.id, kind: b.kind, records: b.recordCount, attempts: b.attempts, lastError: b.lastError, updatedAt: b.updatedAt.toISOString() })),
    lastError: errors[0] ?? lastBatchError
  }
})

const ago = (iso: string, now = Date.now()) => {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000))
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : s < 172800 ? `${Math.round(s / 3600)}h ago` : `${Math.round(s / 86400)}d ago`
}

export const render = (r: Report): string => {
  const lines: Array<string> = []
  lines.push(`database: ${r.database.backend} (${r.database.target})`)
  lines.push(`batches: ${r.batches.pending} pending, ${r.batches.failed} failed, ${r.batches.delivered} delivered, ${r.batches.split} split · records not yet batched: ${r.undelivered} · quarantined: ${r.quarantined}`)
  if (r.projects.length === 0) lines.push("no project fetched yet — run `mhq-sync sync`")
  for (const p of r.projects) {
    const total = Object.values(p.records).reduce((a, b) => a + b, 0)
    const run = p.lastRun ? `${p.lastRun.status} ${ago(p.lastRun.startedAt)}` : "never"
    lines.push(`\n${p.projectPath}  (${p.instance}, id ${p.projectId})`)
    lines.push(`  last run: ${run}${p.lastRun && p.lastRun.warnings.length > 0 ? `, ${p.lastRun.warnings.length} warning(s)` : ""}${p.lastRun && p.lastRun.errors.length > 0 ? `, ${p.lastRun.errors.length} error(s)` : ""}`)
    lines.push(`  staged: ${total} (${Object.entries(p.records).map(([k, n]) => `${k} ${n}`).join(", ") || "none"}) · not yet batched: ${p.unbatched} · quarantined: ${p.quarantined}`)
    const cursorText = Object.entries(p.cursors).map(([k, v]) => `${k} ${v}`).join(", ")
    lines.push(`  cursors: ${cursorText || "none (next fetch backfills)"}`)
    for (const w of p.lastRun?.warnings ?? []) lines.push(`  ! ${w}`)
    for (const e of p.lastRun?.errors ?? []) lines.push(`  ✗ ${e}`)
  }
  if (r.failedBatches.length > 0) {
    lines.push("\nfailed batches (re-send with `mhq-sync replay --batch <id>` once the cause is fixed):")
    for (const b of r.failedBatches) lines.push(`  ${b.id}  ${b.kind}  ${b.records} records  ${b.attempts} attempts  ${b.lastError ?? ""}`)
  }
  if (r.lastError) lines.push(`\nlast error: ${r.lastError}`)
  return lines.join("\n")
}
