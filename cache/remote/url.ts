/**
 * What names a remote: `s3://bucket/prefix` (on the command line as `--remote`, or in anneal.config.json
 * as `"remote": "s3://..."` or `"remote": { "url": "s3://...", "endpoint": "...", "region": "...",
 * "profile": "..." }`). Keys and secrets never go here: they come from the AWS environment or profiles.
 */
import { CacheError } from "../errors.ts"

export interface RemoteSpec {
  /** the URL as the user wrote it, normalised (no trailing slash): how every message names the remote */
  readonly url: string
  readonly bucket: string
  /** "" or "some/prefix/" */
  readonly prefix: string
  readonly endpoint?: string | undefined
  readonly region?: string | undefined
  readonly profile?: string | undefined
}

export type RemoteConfig = string | { readonly url: string; readonly endpoint?: string; readonly region?: string; readonly profile?: string }

/** Parses `s3://bucket[/prefix]`; anything else is a one-line CacheError naming what was given. */
export const parseRemote = (config: RemoteConfig, where = "--remote"): RemoteSpec => {
  const o = typeof config === "string" ? { url: config } : config
  const bad = (why: string) => new CacheError({ message: `${where}: ${why}, got "${o.url}"`, path: o.url })
  const m = /^s3:\/\/([^/]*)(?:\/(.*))?$/.exec(o.url.trim())
  if (m === null) throw bad("a remote is s3://bucket or s3://bucket/prefix")
  const bucket = m[1]!
  if (bucket.includes("@") || bucket.includes(":")) throw bad("put no credentials or port in the remote's URL (use AWS_* variables or a profile, and AWS_ENDPOINT_URL_S3 for a server)")
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw bad("the bucket name must be 3-63 lower-case letters, digits, dots or hyphens")
  const parts = (m[2] ?? "").split("/").filter((p) => p !== "")
  if (parts.some((p) => p === "." || p === "..")) throw bad("the prefix may not contain . or .. segments")
  const prefix = parts.length === 0 ? "" : parts.join("/") + "/"
  if (o.endpoint !== undefined && !/^https?:\/\/[^/@]+(\/.*)?$/.test(o.endpoint)) {
    throw new CacheError({ message: `${where}: endpoint must be an http(s) URL without credentials, got "${o.endpoint}"`, path: o.url })
  }
  return { url: `s3://${bucket}${prefix === "" ? "" : "/" + prefix.slice(0, -1)}`, bucket, prefix, endpoint: o.endpoint, region: o.region, profile: o.profile }
}
