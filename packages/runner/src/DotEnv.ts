/**
 * `.env` files as the older MHQ agent's users write them: `KEY=value`, optional `export `,
 * `# comments`, single-quoted values taken literally and allowed to span lines (PEM secrets),
 * double-quoted values with \n escapes, unquoted values trimmed (a ` #` starts a comment).
 */
import { Data } from "effect"

export class DotEnvError extends Data.TaggedError("DotEnvError")<{ readonly file: string; readonly line: number; readonly message: string }> {}

export const parse = (text: string, file = ".env"): Readonly<Record<string, string>> => {
  const out: Record<string, string> = {}
  const lines = text.replace(/\r\n?/g, "\n").split("\n")
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!
    const line = raw.trim()
    if (line === "" || line.startsWith("#")) continue
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)$/.exec(line)
    if (!m) throw new DotEnvError({ file, line: i + 1, message: `${file}:${i + 1}: expected KEY=value` })
    const key = m[1]!
    let value = m[2]!
    const quote = value[0]
    if (quote === "'" || quote === "\"") {
      // The value ends at the matching quote, possibly lines later.
      let body = value.slice(1)
      const start = i
      let end = findClosing(body, quote)
      while (end === -1) {
        if (++i >= lines.length) {
          throw new DotEnvError({ file, line: start + 1, message: `${file}:${start + 1}: ${key} has an opening ${quote} but no closing one` })
        }
        body += `\n${lines[i]}`
        end = findClosing(body, quote)
      }
      value = body.slice(0, end)
      if (quote === "\"") value = value.replace(/\\n/g, "\n").replace(/\\"/g, "\"").replace(/\\\\/g, "\\")
    } else {
      value = value.replace(/\s+#.*$/, "").trim()
    }
    out[key] = value
  }
  return out
}

const findClosing = (s: string, quote: string): number => {
  for (let j = 0; j < s.length; j++) {
    if (quote === "\"" && s[j] === "\\") {
      j++
      continue
    }
    if (s[j] === quote) return j
  }
  return -1
}
