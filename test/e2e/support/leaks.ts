/**
 * Scenario 7: no secret and no plaintext record body in any captured log line. Every value is
 * searched as is and JSON-escaped (log lines are JSON; a multi-line text appears with \n escapes).
 */
import type { SimGitlab } from "@mhq-sync/testkit"
import type { CapturedLine, Workspace } from "./agent.ts"

export interface Canary {
  readonly label: string
  readonly value: string
}

/** Texts of the sim that must never reach a log: comment bodies, MR descriptions, commit messages, emails. */
export const plaintextCanaries = (gitlab: SimGitlab.Handle): Array<Canary> => {
  const out = new Map<string, Canary>()
  const add = (label: string, value: string | null | undefined) => {
    // Very short texts ("LGTM") would match unrelated words; every long one is checked.
    if (value !== null && value !== undefined && value.trim().length >= 12 && !out.has(value)) out.set(value, { label, value })
  }
  for (const p of gitlab.projects()) {
    for (const mr of gitlab.mergeRequests(p.id)) {
      add(`description of ${p.id}!${mr.iid}`, mr.description)
      // The description's own lines, so a truncated or partial copy is caught too.
      for (const line of mr.description.split("\n")) if (/[a-z]{4}/.test(line) && !line.startsWith("#") && !/^\d\./.test(line)) add(`description line of ${p.id}!${mr.iid}`, line)
      for (const n of gitlab.notes(p.id, mr.iid)) if (!n.system) add(`comment ${n.id} on ${p.id}!${mr.iid}`, n.body)
      for (const c of gitlab.commits(p.id, mr.iid)) {
        add(`message of commit ${c.id}`, c.message)
        add(`email of a commit author`, c.author_email)
        for (const line of c.message.split("\n").slice(1)) if (line.startsWith("Signed-off-by")) add(`sign-off of commit ${c.id}`, line)
      }
    }
  }
  return [...out.values()]
}

export interface Leak {
  readonly label: string
  readonly agent: string
  readonly line: string
}

export const findLeaks = (lines: ReadonlyArray<CapturedLine>, canaries: ReadonlyArray<Canary>): Array<Leak> => {
  const needles = canaries.flatMap((c) => {
    const escaped = JSON.stringify(c.value).slice(1, -1)
    return escaped === c.value ? [{ label: c.label, needle: c.value }] : [{ label: c.label, needle: c.value }, { label: c.label, needle: escaped }]
  })
  const leaks: Array<Leak> = []
  for (const l of lines) {
    for (const n of needles) {
      if (l.text.includes(n.needle)) leaks.push({ label: n.label, agent: l.agent, line: l.text.length > 400 ? `${l.text.slice(0, 400)}…` : l.text })
    }
  }
  return leaks
}

/** The embedded databases' passwords of these workspaces (present once a cluster was created). */
export const databaseSecrets = (list: ReadonlyArray<Workspace>): Array<Canary> =>
  list.flatMap((w) => {
    const value = w.databasePassword
    return value === undefined || value.length < 8 ? [] : [{ label: `database password of ${w.name}`, value }]
  })
