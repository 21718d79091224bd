/**
 * Where the remote's credentials, region and endpoint come from: the usual AWS environment variables,
 * else the shared credentials and config files (`~/.aws/credentials`, `~/.aws/config`, the profile
 * `AWS_PROFILE` or "default"). Only static keys (with an optional session token) are understood: SSO,
 * `credential_process` and instance metadata are not (docs/remote-store.md). Nothing here is ever
 * written anywhere: the secret lives in memory and only signs requests.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

export interface Credentials {
  readonly accessKeyId: string
  readonly secretAccessKey: string
  readonly sessionToken?: string | undefined
  /** where they came from, for error messages ("AWS_ACCESS_KEY_ID", "profile default in ~/.aws/credentials") */
  readonly source: string
}

export interface S3Settings {
  readonly credentials: Credentials | undefined
  readonly region: string
  /** an S3-compatible endpoint (http://127.0.0.1:8333); undefined: AWS's own */
  readonly endpoint: string | undefined
}

/** Sections of an INI file: `[name]` -> key -> value (keys lower-cased). */
const readIni = (file: string): Map<string, Map<string, string>> => {
  const sections = new Map<string, Map<string, string>>()
  let text: string
  try {
    text = fs.readFileSync(file, "utf8")
  } catch {
    return sections
  }
  let current: Map<string, string> | undefined
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/^\s+|\s+$/g, "")
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue
    const header = /^\[\s*(.+?)\s*\]$/.exec(line)
    if (header !== null) {
      current = new Map()
      sections.set(header[1]!, current)
      continue
    }
    const kv = /^([^=]+?)\s*=\s*(.*)$/.exec(line)
    if (kv !== null && current !== undefined) current.set(kv[1]!.toLowerCase(), kv[2]!)
  }
  return sections
}

const nonEmpty = (v: string | undefined): string | undefined => (v === undefined || v === "" ? undefined : v)

/** Reads the settings for one profile (explicit, else AWS_PROFILE, else "default"). */
export const resolveS3Settings = (
  options: { profile?: string | undefined; region?: string | undefined; endpoint?: string | undefined } = {},
  env: NodeJS.ProcessEnv = process.env
): S3Settings => {
  const home = os.homedir()
  const profile = options.profile ?? nonEmpty(env.AWS_PROFILE) ?? nonEmpty(env.AWS_DEFAULT_PROFILE) ?? "default"
  const credFile = nonEmpty(env.AWS_SHARED_CREDENTIALS_FILE) ?? path.join(home, ".aws", "credentials")
  const configFile = nonEmpty(env.AWS_CONFIG_FILE) ?? path.join(home, ".aws", "config")
  const credSection = readIni(credFile).get(profile)
  const config = readIni(configFile)
  const configSection = config.get(profile === "default" ? "default" : `profile ${profile}`) ?? config.get(profile)

  let credentials: Credentials | undefined
  const envKey = nonEmpty(env.AWS_ACCESS_KEY_ID)
  const envSecret = nonEmpty(env.AWS_SECRET_ACCESS_KEY)
  if (envKey !== undefined && envSecret !== undefined) {
    credentials = { accessKeyId: envKey, secretAccessKey: envSecret, sessionToken: nonEmpty(env.AWS_SESSION_TOKEN), source: "AWS_ACCESS_KEY_ID" }
  } else {
    for (const [section, file] of [[credSection, credFile], [configSection, configFile]] as const) {
      const key = section?.get("aws_access_key_id")
      const secret = section?.get("aws_secret_access_key")
      if (key !== undefined && secret !== undefined) {
        credentials = { accessKeyId: key, secretAccessKey: secret, sessionToken: section?.get("aws_session_token"), source: `profile ${profile} in ${file}` }
        break
      }
    }
  }
  const region = options.region ?? nonEmpty(env.AWS_REGION) ?? nonEmpty(env.AWS_DEFAULT_REGION) ?? configSection?.get("region") ?? "us-east-1"
  const endpoint = options.endpoint ?? nonEmpty(env.AWS_ENDPOINT_URL_S3) ?? nonEmpty(env.AWS_ENDPOINT_URL) ?? configSection?.get("endpoint_url")
  return { credentials, region, endpoint }
}
