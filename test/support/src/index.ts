export * as TestDatabase from "./TestDatabase.ts"
export * as SimGitlab from "./SimGitlab.ts"
export * as ReferenceReceiver from "./ReferenceReceiver.ts"
