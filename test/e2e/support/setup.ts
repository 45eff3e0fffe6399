/** The agent's configuration for a simulated GitLab and a reference receiver. */
import type { ReferenceReceiver, SimGitlab } from "@mhq-sync/testkit"
import type { Options } from "./expected.ts"

export const clientId = "e2e-client"

/** `.env` of an agent: the older agent's names plus ours; groups = the sim's top-level groups. */
export const agentEnv = (
  gitlab: SimGitlab.Handle,
  receiver: { readonly url: string; readonly secret: string; readonly publicKey: string },
  extra: Record<string, string> = {}
): Record<string, string> => ({
  GITLAB_DOMAIN_URL: gitlab.url,
  GITLAB_ACCESS_TOKEN: gitlab.token,
  GITLAB_GROUPS: gitlab.groups().filter((g) => g.parentId === null).map((g) => g.fullPath).join(","),
  // The default politeness (300/min) is for real servers; the sim on loopback takes more.
  GITLAB_REQUESTS_PER_MINUTE: "30000",
  GITLAB_CONCURRENCY: "4",
  MHQ_WEBHOOK_URL: receiver.url,
  MHQ_CLIENT_ID: clientId,
  MHQ_CLIENT_SECRET: receiver.secret,
  MHQ_PUBLIC_KEY: receiver.publicKey,
  MHQ_PRIVACY_EMAILS: "hash",
  MHQ_BATCH_MAX_RECORDS: "200",
  ...extra
})

/** What the expectation needs to know about that configuration. */
export const expectationOptions = (gitlab: SimGitlab.Handle): Options => ({ instance: gitlab.url, emails: "hash", names: "keep" })

/** Secrets of a setup that must never be logged. */
export const secretsOf = (gitlab: SimGitlab.Handle, receiver: ReferenceReceiver.Handle) => [
  { label: "GitLab token", value: gitlab.token },
  { label: "MHQ client secret", value: receiver.secret },
  { label: "MHQ private key", value: receiver.privateKey }
]
