// GitLab REST v4 response shapes (as documented for GitLab 16/17), built from the model.
// Deliberately verbose: the client's minimisation needs realistic extra fields to drop.
import type { CommitRec, DeploymentRec, DiffRec, Group, Mr, MrDetail, NoteRec, PipelineRec, Project, User, World } from "./model.ts"

export interface GlUser {
  readonly id: number
  readonly username: string
  readonly name: string
  readonly state: string
  readonly locked: boolean
  readonly avatar_url: string
  readonly web_url: string
}

export interface GlMergeRequest {
  readonly id: number
  readonly iid: number
  readonly project_id: number
  readonly title: string
  readonly description: string
  readonly state: "opened" | "merged" | "closed"
  readonly created_at: string
  readonly updated_at: string
  readonly merged_at: string | null
  readonly closed_at: string | null
  readonly author: GlUser
  readonly reviewers: ReadonlyArray<GlUser>
  readonly draft: boolean
  readonly user_notes_count: number
  readonly sha: string
  readonly web_url: string
  readonly [key: string]: unknown
}

export interface GlNote {
  readonly id: number
  readonly body: string
  readonly author: GlUser
  readonly created_at: string
  readonly updated_at: string
  readonly system: boolean
  readonly noteable_iid: number
  readonly [key: string]: unknown
}

export interface GlApprovals {
  readonly approved: boolean
  readonly approvals_required: number
  readonly approvals_left: number
  readonly approved_by: ReadonlyArray<{ readonly user: GlUser }>
  readonly [key: string]: unknown
}

export interface GlCommit {
  readonly id: string
  readonly short_id: string
  readonly title: string
  readonly message: string
  readonly author_name: string
  readonly author_email: string
  readonly authored_date: string
  readonly committed_date: string
  readonly created_at: string
  readonly [key: string]: unknown
}

export interface GlDiff {
  readonly old_path: string
  readonly new_path: string
  readonly diff: string
  readonly new_file: boolean
  readonly renamed_file: boolean
  readonly deleted_file: boolean
  readonly [key: string]: unknown
}

export interface GlPipeline {
  readonly id: number
  readonly iid: number
  readonly project_id: number
  readonly status: string
  readonly ref: string
  readonly sha: string
  readonly created_at: string
  readonly updated_at: string
  readonly started_at?: string | null
  readonly finished_at?: string | null
  readonly duration?: number | null
  readonly [key: string]: unknown
}

export interface GlDeployment {
  readonly id: number
  readonly iid: number
  readonly status: string
  readonly created_at: string
  readonly updated_at: string
  readonly environment: { readonly id: number; readonly name: string; readonly [key: string]: unknown }
  readonly deployable: { readonly finished_at: string | null; readonly [key: string]: unknown }
  readonly [key: string]: unknown
}

export interface GlProject {
  readonly id: number
  readonly path_with_namespace: string
  readonly archived: boolean
  readonly namespace: { readonly id: number; readonly full_path: string; readonly [key: string]: unknown }
  readonly [key: string]: unknown
}

export interface GlGroup {
  readonly id: number
  readonly full_path: string
  readonly parent_id: number | null
  readonly [key: string]: unknown
}

export const iso = (ms: number): string => new Date(ms).toISOString()
const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms))
/** Commit dates come from git with an offset, not "Z". */
const gitDate = (ms: number): string => iso(ms).replace("Z", "+00:00")
const seconds = (from: number | null, to: number | null): number | null =>
  from === null || to === null ? null : Math.round((to - from) / 1000)

/** Serializers bound to the instance URL (links in GitLab responses are absolute). */
export class Json {
  constructor(readonly world: World, readonly base: string) {}

  user(u: User): GlUser {
    return {
      id: u.id,
      username: u.username,
      name: u.name,
      state: "active",
      locked: false,
      avatar_url: `${this.base}/uploads/-/system/user/avatar/${u.id}/avatar.png`,
      web_url: `${this.base}/${u.username}`
    }
  }

  private readonly users = new Map<number, GlUser>()

  /** Cached: user objects are immutable and appear several times in every MR. */
  userById(id: number): GlUser {
    let u = this.users.get(id)
    if (!u) this.users.set(id, (u = this.user(this.world.user(id))))
    return u
  }

  currentUser(): Record<string, unknown> {
    const u = this.world.tokenUser
    return {
      ...this.user(u),
      created_at: iso(this.world.genNow - 700 * 86_400_000),
      bio: "Service account used by mhq-sync",
      location: "",
      public_email: null,
      skype: "",
      linkedin: "",
      twitter: "",
      discord: "",
      website_url: "",
      organization: "",
      job_title: "",
      pronouns: null,
      bot: false,
      work_information: null,
      local_time: null,
      last_sign_in_at: null,
      confirmed_at: iso(this.world.genNow - 700 * 86_400_000),
      last_activity_on: iso(this.world.now).slice(0, 10),
      email: u.email,
      theme_id: 1,
      color_scheme_id: 1,
      projects_limit: 100000,
      current_sign_in_at: null,
      identities: [],
      can_create_group: false,
      can_create_project: false,
      two_factor_enabled: false,
      external: false,
      private_profile: false,
      commit_email: u.email
    }
  }

  private namespace(g: Group): GlProject["namespace"] {
    return {
      id: g.id,
      name: g.name,
      path: g.path,
      kind: "group",
      full_path: g.fullPath,
      parent_id: g.parentId,
      avatar_url: null,
      web_url: `${this.base}/groups/${g.fullPath}`
    }
  }

  project(p: Project): GlProject {
    const api = `${this.base}/api/v4/projects/${p.id}`
    const web = `${this.base}/${p.pathWithNamespace}`
    const host = new URL(this.base).host
    const ci = !p.flags.ciDisabled
    const repo = !p.flags.repositoryDisabled
    return {
      id: p.id,
      description: `The ${p.name} service.`,
      name: p.name,
      name_with_namespace: p.nameWithNamespace,
      path: p.path,
      path_with_namespace: p.pathWithNamespace,
      created_at: iso(p.createdAt),
      default_branch: "main",
      tag_list: [],
      topics: [],
      ssh_url_to_repo: `git@${host}:${p.pathWithNamespace}.git`,
      http_url_to_repo: `${web}.git`,
      web_url: web,
      readme_url: `${web}/-/blob/main/README.md`,
      forks_count: 0,
      avatar_url: null,
      star_count: p.index % 4,
      last_activity_at: iso(this.world.genNow - (p.index % 48) * 3_600_000),
      namespace: this.namespace(p.namespace),
      container_registry_image_prefix: `${host}/${p.pathWithNamespace}`,
      _links: {
        self: api,
        issues: `${api}/issues`,
        merge_requests: `${api}/merge_requests`,
        repo_branches: `${api}/repository/branches`,
        labels: `${api}/labels`,
        events: `${api}/events`,
        members: `${api}/members`,
        cluster_agents: `${api}/cluster_agents`
      },
      packages_enabled: true,
      empty_repo: false,
      archived: p.flags.archived,
      visibility: "private",
      resolve_outdated_diff_discussions: false,
      container_registry_enabled: true,
      container_registry_access_level: "enabled",
      issues_enabled: true,
      merge_requests_enabled: true,
      wiki_enabled: true,
      jobs_enabled: ci,
      snippets_enabled: true,
      service_desk_enabled: false,
      can_create_merge_request_in: true,
      issues_access_level: "enabled",
      repository_access_level: repo ? "enabled" : "disabled",
      merge_requests_access_level: "enabled",
      forking_access_level: "enabled",
      wiki_access_level: "enabled",
      builds_access_level: ci ? "enabled" : "disabled",
      snippets_access_level: "enabled",
      pages_access_level: "private",
      analytics_access_level: "enabled",
      environments_access_level: ci ? "enabled" : "disabled",
      emails_enabled: true,
      shared_runners_enabled: true,
      lfs_enabled: true,
      creator_id: 2,
      import_status: "none",
      open_issues_count: p.index % 13,
      ci_default_git_depth: 20,
      public_jobs: true,
      build_timeout: 3600,
      auto_cancel_pending_pipelines: "enabled",
      ci_config_path: "",
      shared_with_groups: [],
      only_allow_merge_if_pipeline_succeeds: false,
      allow_merge_on_skipped_pipeline: null,
      request_access_enabled: true,
      only_allow_merge_if_all_discussions_are_resolved: false,
      remove_source_branch_after_merge: true,
      printing_merge_request_link_enabled: true,
      merge_method: "merge",
      squash_option: "default_off",
      auto_devops_enabled: false,
      auto_devops_deploy_strategy: "continuous",
      autoclose_referenced_issues: true,
      approvals_before_merge: p.approvalsRequired,
      mirror: false,
      permissions: { project_access: { access_level: 20, notification_level: 3 }, group_access: null }
    }
  }

  group(g: Group): GlGroup {
    return {
      id: g.id,
      web_url: `${this.base}/groups/${g.fullPath}`,
      name: g.name,
      path: g.path,
      description: `${g.fullName} team`,
      visibility: "private",
      share_with_group_lock: false,
      require_two_factor_authentication: false,
      two_factor_grace_period: 48,
      project_creation_level: "developer",
      auto_devops_enabled: null,
      subgroup_creation_level: "maintainer",
      emails_disabled: false,
      emails_enabled: true,
      mentions_disabled: null,
      lfs_enabled: true,
      default_branch: null,
      default_branch_protection: 2,
      avatar_url: null,
      request_access_enabled: true,
      full_name: g.fullName,
      full_path: g.fullPath,
      created_at: iso(g.createdAt),
      parent_id: g.parentId,
      organization_id: 1,
      shared_runners_setting: "enabled",
      ldap_cn: null,
      ldap_access: null,
      wiki_access_level: "enabled"
    }
  }

  /** `GET /groups/:id` also embeds (up to 100) projects and shared projects, like GitLab. */
  groupDetail(g: Group, withProjects: boolean): Record<string, unknown> {
    const direct = this.world.groupProjects(g, false, false)
    const shared = this.world.projects.filter((p) => p.sharedWithGroupIds.includes(g.id))
    return {
      ...this.group(g),
      shared_with_groups: [],
      prevent_sharing_groups_outside_hierarchy: false,
      ...(withProjects
        ? { projects: direct.slice(0, 100).map((p) => this.project(p)), shared_projects: shared.slice(0, 100).map((p) => this.project(p)) }
        : {})
    }
  }

  mergeRequest(m: Mr, detailed: boolean): GlMergeRequest {
    const p = m.project
    const web = `${this.base}/${p.pathWithNamespace}/-/merge_requests/${m.iid}`
    const merged = m.state === "merged"
    const mergedBy = m.mergedById === null ? null : this.userById(m.mergedById)
    const author = this.userById(m.authorId)
    const assignees = m.assigneeId === null ? [] : [this.userById(m.assigneeId)]
    const base = {
      id: m.id,
      iid: m.iid,
      project_id: p.id,
      title: m.title,
      description: m.description,
      state: m.state,
      created_at: iso(m.createdAt),
      updated_at: iso(m.updatedAt),
      merged_by: mergedBy,
      merge_user: mergedBy,
      merged_at: isoOrNull(m.mergedAt),
      closed_by: m.closedById === null ? null : this.userById(m.closedById),
      closed_at: isoOrNull(m.closedAt),
      target_branch: "main",
      source_branch: m.sourceBranch,
      user_notes_count: m.userNotesCount,
      upvotes: m.upvotes,
      downvotes: 0,
      author,
      assignees,
      assignee: assignees[0] ?? null,
      reviewers: m.reviewerIds.map((id) => this.userById(id)),
      source_project_id: p.id,
      target_project_id: p.id,
      labels: m.labels,
      draft: m.draft,
      work_in_progress: m.draft,
      milestone: null,
      merge_when_pipeline_succeeds: false,
      merge_status: "can_be_merged",
      detailed_merge_status: m.state !== "opened" ? "not_open" : m.draft ? "draft_status" : "mergeable",
      sha: m.headSha,
      merge_commit_sha: merged && !m.squash ? m.mergeCommitSha : null,
      squash_commit_sha: merged && m.squash ? m.mergeCommitSha : null,
      discussion_locked: null,
      should_remove_source_branch: null,
      force_remove_source_branch: true,
      prepared_at: iso(m.createdAt + 2000),
      reference: `!${m.iid}`,
      references: { short: `!${m.iid}`, relative: `!${m.iid}`, full: `${p.pathWithNamespace}!${m.iid}` },
      web_url: web,
      time_stats: { time_estimate: 0, total_time_spent: 0, human_time_estimate: null, human_total_time_spent: null },
      squash: m.squash,
      squash_on_merge: m.squash,
      task_completion_status: { count: 0, completed_count: 0 },
      has_conflicts: false,
      blocking_discussions_resolved: true,
      approvals_before_merge: null
    }
    if (!detailed) return base
    return {
      ...base,
      subscribed: false,
      changes_count: String(m.fileCount),
      latest_build_started_at: null,
      latest_build_finished_at: null,
      first_deployed_to_production_at: null,
      pipeline: null,
      head_pipeline: null,
      diff_refs: { base_sha: m.baseSha, head_sha: m.headSha, start_sha: m.baseSha },
      merge_error: null,
      first_contribution: false,
      user: { can_merge: false }
    }
  }

  note(m: Mr, n: NoteRec): GlNote {
    return {
      id: n.id,
      type: n.type,
      body: n.body,
      attachment: null,
      author: this.userById(n.authorId),
      created_at: iso(n.createdAt),
      updated_at: iso(n.updatedAt),
      system: n.system,
      noteable_id: m.id,
      noteable_type: "MergeRequest",
      project_id: m.project.id,
      commit_id: null,
      resolvable: n.resolvable,
      resolved: n.resolvable ? false : undefined,
      resolved_by: null,
      resolved_at: null,
      confidential: false,
      internal: false,
      imported: false,
      imported_from: "none",
      noteable_iid: m.iid,
      commands_changes: {}
    }
  }

  approvals(m: Mr, d: MrDetail): GlApprovals {
    const p = m.project
    const approvers = [...new Set(d.approvals.map((a) => a.userId))]
    const left = Math.max(0, p.approvalsRequired - approvers.length)
    return {
      id: m.id,
      iid: m.iid,
      project_id: p.id,
      title: m.title,
      description: m.description,
      state: m.state,
      created_at: iso(m.createdAt),
      updated_at: iso(m.updatedAt),
      merge_status: "can_be_merged",
      approved: left === 0,
      approvals_required: p.approvalsRequired,
      approvals_left: left,
      require_password_to_approve: false,
      approved_by: approvers.map((id) => ({ user: this.userById(id) })),
      suggested_approvers: [],
      approvers: [],
      approver_groups: [],
      user_has_approved: false,
      user_can_approve: false,
      approval_rules_left: [],
      has_approval_rules: p.approvalsRequired > 0,
      merge_request_approvers_available: true,
      multiple_approval_rules_available: true,
      invalid_approvers_rules: []
    }
  }

  commit(p: Project, c: CommitRec): GlCommit {
    const u = this.world.user(c.authorId)
    return {
      id: c.sha,
      short_id: c.sha.slice(0, 8),
      created_at: gitDate(c.committedAt),
      parent_ids: [c.parentSha],
      title: c.title,
      message: c.message,
      author_name: u.name,
      author_email: u.email,
      authored_date: gitDate(c.authoredAt),
      committer_name: u.name,
      committer_email: u.email,
      committed_date: gitDate(c.committedAt),
      trailers: {},
      extended_trailers: {},
      web_url: `${this.base}/${p.pathWithNamespace}/-/commit/${c.sha}`
    }
  }

  diff(d: DiffRec): GlDiff {
    return {
      old_path: d.oldPath,
      new_path: d.newPath,
      a_mode: d.newFile ? "0" : "100644",
      b_mode: d.deletedFile ? "0" : "100644",
      diff: d.diff,
      new_file: d.newFile,
      renamed_file: d.renamedFile,
      deleted_file: d.deletedFile,
      generated_file: false
    }
  }

  /** The list endpoint's shape (no timings); `detailed` = `GET /pipelines/:id`. */
  pipeline(p: Project, x: PipelineRec, detailed: boolean): GlPipeline {
    const base = {
      id: x.id,
      iid: x.iid,
      project_id: x.projectId,
      sha: x.sha,
      ref: x.ref,
      status: x.status,
      source: x.source,
      created_at: iso(x.createdAt),
      updated_at: iso(x.updatedAt),
      web_url: `${this.base}/${p.pathWithNamespace}/-/pipelines/${x.id}`,
      name: null
    }
    if (!detailed) return base
    const queued = x.startedAt === null ? null : Math.round((x.startedAt - x.createdAt) / 1000)
    return {
      ...base,
      before_sha: x.beforeSha,
      tag: false,
      yaml_errors: null,
      user: this.userById(x.userId),
      started_at: isoOrNull(x.startedAt),
      finished_at: isoOrNull(x.finishedAt),
      committed_at: null,
      duration: seconds(x.startedAt, x.finishedAt),
      queued_duration: queued,
      coverage: null,
      detailed_status: {
        icon: `status_${x.status}`,
        text: x.status,
        label: x.status === "success" ? "passed" : x.status,
        group: x.status,
        tooltip: x.status === "success" ? "passed" : x.status,
        has_details: true,
        details_path: `/${p.pathWithNamespace}/-/pipelines/${x.id}`,
        illustration: null,
        favicon: `/assets/ci_favicons/favicon_status_${x.status}.png`
      }
    }
  }

  deployment(p: Project, d: DeploymentRec): GlDeployment {
    const user = this.userById(d.userId)
    const pipeline = this.world.pipelines(p).find((x) => x.id === d.pipelineId)
    const jobStatus = d.status === "running" ? "running" : d.status === "created" ? "created" : d.status
    return {
      id: d.id,
      iid: d.iid,
      ref: d.ref,
      sha: d.sha,
      created_at: iso(d.createdAt),
      updated_at: iso(d.updatedAt),
      user,
      environment: {
        id: d.environmentId,
        name: d.environment,
        slug: d.environment,
        external_url: `https://${d.environment}.${p.path}.example.invalid`,
        created_at: iso(p.createdAt),
        updated_at: iso(d.updatedAt),
        tier: d.environment,
        state: "available"
      },
      deployable: {
        id: d.jobId,
        status: jobStatus,
        stage: "deploy",
        name: `deploy:${d.environment}`,
        ref: d.ref,
        tag: false,
        coverage: null,
        allow_failure: false,
        created_at: iso(d.createdAt),
        started_at: isoOrNull(d.startedAt),
        finished_at: isoOrNull(d.finishedAt),
        erased_at: null,
        duration: seconds(d.startedAt, d.finishedAt),
        queued_duration: 1.5,
        user,
        commit: {
          id: d.sha,
          short_id: d.sha.slice(0, 8),
          created_at: gitDate(d.createdAt - 600_000),
          parent_ids: [],
          title: `Merge branch into 'main'`,
          message: `Merge branch into 'main'\n\nSee merge request`,
          author_name: user.name,
          author_email: this.world.user(d.userId).email,
          authored_date: gitDate(d.createdAt - 600_000),
          committer_name: user.name,
          committer_email: this.world.user(d.userId).email,
          committed_date: gitDate(d.createdAt - 600_000),
          trailers: {},
          web_url: `${this.base}/${p.pathWithNamespace}/-/commit/${d.sha}`
        },
        pipeline: pipeline ? this.pipeline(p, pipeline, false) : null,
        web_url: `${this.base}/${p.pathWithNamespace}/-/jobs/${d.jobId}`,
        project: { ci_job_token_scope_enabled: false },
        artifacts: [],
        runner: null,
        runner_manager: null,
        artifacts_expire_at: null,
        archived: false,
        tag_list: []
      },
      status: d.status
    }
  }
}
