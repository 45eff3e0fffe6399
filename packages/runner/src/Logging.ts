/**
 * Log output: JSON lines when stdout is not a terminal (containers, files), readable lines on a
 * terminal; `auto` picks. Secrets are `Redacted` everywhere, so loggers print `<redacted>`.
 */
import { Layer, Logger, References } from "effect"

export type Level = "debug" | "info" | "warn" | "error"
export type Format = "auto" | "json" | "pretty"

const levels = { debug: "Debug", info: "Info", warn: "Warn", error: "Error" } as const

export const layer = (options: { readonly level: Level; readonly format: Format }) => {
  const json = options.format === "json" || (options.format === "auto" && !process.stdout.isTTY)
  return Layer.mergeAll(
    Logger.layer([json ? Logger.consoleJson : Logger.consolePretty()]),
    Layer.succeed(References.MinimumLogLevel, levels[options.level])
  )
}
