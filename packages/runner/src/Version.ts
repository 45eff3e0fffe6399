/** The agent's version: baked into the bundle at build time, read from package.json otherwise. */
import pkg from "../package.json" with { type: "json" }

export const current: string = process.env.MHQ_SYNC_BUNDLED_VERSION ?? pkg.version
