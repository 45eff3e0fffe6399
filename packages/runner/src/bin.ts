#!/usr/bin/env node
/**
 * The `mhq-sync` executable. SIGTERM/SIGINT interrupt the command: the open transaction commits or
 * rolls back, finalizers run (stopping heartbeat, database shutdown), and the process exits 0.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Cause, Effect, Exit } from "effect"
import * as Cli from "./Cli.ts"

const exitCodeOf = (exit: Exit.Exit<unknown, unknown>): number => {
  if (Exit.isSuccess(exit)) return 0
  if (Cause.hasInterruptsOnly(exit.cause)) return 0
  const failure = exit.cause.reasons.find(Cause.isFailReason)
  const error = failure?.error as { _tag?: string; exitCode?: number } | undefined
  if (error?._tag === "CommandFailed") return error.exitCode ?? 1
  // effect/cli's own parse errors (unknown flag, bad value, missing argument) are usage errors.
  if (error?._tag !== undefined && /^(Missing|Unrecognized|Invalid|Duplicate|Unknown|ShowHelp)/.test(error._tag)) return 2
  return 1
}

const program = Cli.cli.pipe(
  // Users get one clear line per failure; an unexpected defect still says what happened.
  Effect.tapCause((cause) =>
    Effect.sync(() => {
      if (Cause.hasInterruptsOnly(cause)) return
      const failure = cause.reasons.find(Cause.isFailReason)
      const err = failure?.error as { _tag?: string; message?: string } | undefined
      if (err?._tag === "CommandFailed") process.stderr.write(`mhq-sync: ${err.message}\n`)
      else if (failure === undefined) process.stderr.write(`mhq-sync: unexpected failure (a bug — please report it):\n${Cause.pretty(cause)}\n`)
    })
  ),
  Effect.provide(NodeServices.layer)
)

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  teardown: (exit, onExit) => onExit(exitCodeOf(exit))
})
