/**
 * libsodium readiness, modelled once. libsodium-wrappers loads a WebAssembly module asynchronously;
 * every call before `await sodium.ready` fails. `ready()` is a memoised promise for plain callers,
 * `layer` the same as an Effect service; `get()` is the synchronous accessor for hot paths after it.
 */
import { Context, Effect, Layer } from "effect"
import sodium from "libsodium-wrappers"

export type Api = typeof sodium

let loading: Promise<Api> | undefined
let loaded: Api | undefined

/** Resolves once libsodium is usable (the first call starts loading; later calls share it). */
export const ready = (): Promise<Api> => {
  loading ??= sodium.ready.then(() => {
    loaded = sodium
    return sodium
  })
  return loading
}

/** The loaded library; throws when `ready()` has not completed yet. */
export const get = (): Api => {
  if (loaded === undefined) {
    throw new Error("libsodium is not ready: await Sodium.ready() (or provide Sodium.layer) before sealing or opening")
  }
  return loaded
}

export class Sodium extends Context.Service<Sodium, Api>()("@mhq-sync/mhq-sink/Sodium") {}

/** Loads libsodium once; memoised like any layer, and shares the module-level promise. */
export const layer = Layer.effect(Sodium, Effect.promise(ready))
