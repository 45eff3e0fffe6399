/**
 * The one retry policy shared by every remote call (GitLab requests, webhook deliveries, database
 * reconnects): exponential growth, full jitter, a cap per wait. Callers add their own stop rule
 * (attempt count or maximum age) and honour server hints such as Retry-After on top.
 */
import { Duration, Effect, Schedule } from "effect"

export interface Options {
  /** First wait (before jitter). */
  readonly base: Duration.Input
  /** Largest single wait. */
  readonly cap: Duration.Input
  readonly factor?: number
}

export const defaults: Options = { base: "500 millis", cap: "60 seconds", factor: 2 }

/** Wait before retry number `attempt` (0-based), with full jitter in [d/2, d]; `random` in [0,1). */
export const delay = (attempt: number, options: Options = defaults, random: number = Math.random()): Duration.Duration => {
  const base = Duration.toMillis(Duration.fromInputUnsafe(options.base))
  const cap = Duration.toMillis(Duration.fromInputUnsafe(options.cap))
  const raw = Math.min(cap, base * Math.pow(options.factor ?? 2, Math.max(0, attempt)))
  return Duration.millis(Math.round(raw / 2 + (raw / 2) * random))
}

/** The same policy as a Schedule (unbounded: combine with `Schedule.recurs` or a time limit). */
export const schedule = (options: Options = defaults) => {
  const cap = Duration.fromInputUnsafe(options.cap)
  return Schedule.exponential(options.base, options.factor ?? 2).pipe(
    Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, cap))),
    Schedule.jittered
  )
}
