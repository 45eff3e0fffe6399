// Vocabulary for generated names and texts. Plain invented words; nothing here is real data.

export const firstNames = [
  "Ada", "Bruno", "Chiara", "Dmitri", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kemal", "Lena",
  "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tariq", "Uma", "Viktor", "Wen", "Ximena",
  "Yusuf", "Zoe"
] as const

export const lastNames = [
  "Albers", "Banerjee", "Costa", "Dumont", "Eriksen", "Fischer", "Garcia", "Horvat", "Ivanova", "Jansen",
  "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Petrov", "Quiroga", "Rossi", "Schmidt", "Tanaka",
  "Usman", "Varga", "Weber", "Xu", "Yilmaz", "Zeller"
] as const

export const groupNames = [
  "platform", "payments", "mobile", "data", "infra", "growth", "search", "identity", "commerce", "devtools"
] as const

export const subgroupNames = ["backend", "frontend", "libs", "services", "tools", "ops"] as const

export const projectNames = [
  "api-gateway", "billing", "checkout", "web-app", "ios-app", "android-app", "ledger", "notifications", "auth",
  "catalog", "etl-jobs", "warehouse", "terraform", "helm-charts", "ci-templates", "feature-flags", "search-index",
  "recommendations", "session-service", "docs-site"
] as const

export const verbs = [
  "Add", "Fix", "Refactor", "Remove", "Update", "Improve", "Introduce", "Migrate", "Simplify", "Speed up"
] as const

export const topics = [
  "retry logic", "pagination", "login flow", "cache invalidation", "error handling", "metrics", "rate limiter",
  "database migration", "feature flag", "webhook handler", "CSV export", "timezone handling", "build script",
  "dependency versions", "audit log", "search ranking", "session expiry", "input validation"
] as const

export const comments = [
  "Looks good to me, just one nit below.",
  "Could we add a test for the empty case?",
  "Why not reuse the existing helper here?",
  "This will run on every request, is that intended?",
  "Nice cleanup!",
  "Please rename this variable, it's confusing next to the other one.",
  "I think this breaks the backwards compatibility of the API.",
  "Done, thanks for the review.",
  "Good catch, fixed in the latest push.",
  "Can you rebase on main? There's a conflict in the lockfile.",
  "Let's discuss this in the sync tomorrow.",
  "Should this be behind a feature flag?",
  "LGTM",
  "The pipeline is flaky on this job, retrying.",
  "We need to update the docs as well."
] as const

export const labels = ["bug", "feature", "tech-debt", "security", "performance", "documentation", "ux"] as const

export const dirs = ["src", "src/lib", "src/api", "app/models", "app/services", "test", "config", "scripts"] as const
export const exts = [".ts", ".rb", ".go", ".py", ".yml", ".md"] as const

export const codeWords = [
  "const", "result", "value", "items", "config", "client", "retry", "return", "await", "options", "count",
  "user", "cache", "timeout", "error", "response", "request", "limit", "offset", "page"
] as const

export const environments = ["production", "staging"] as const
