/**
 * A small S3 client: the six calls the remote store needs (HEAD, GET to a file, PUT from a file or
 * bytes, DELETE, ListObjectsV2), signed with AWS Signature Version 4 over node:http(s).
 *
 * Why not @aws-sdk/client-s3: it is ~100 packages and several MB to load for six requests, and its
 * streaming uploads of unknown length need its multipart helper. Here every upload has a known length
 * and a known sha256 (the store already hashed each file), so the payload hash is signed and S3 itself
 * rejects a body that does not match it: a torn upload can never be stored under a content address.
 * Downloads are rehashed as they stream to disk. Path-style URLs for custom endpoints (SeaweedFS, MinIO,
 * Ceph), virtual-hosted for AWS. Files over 4 GiB go up in signed parts (multipart upload).
 */
import { createHash, createHmac } from "node:crypto"
import * as fs from "node:fs"
import type * as http from "node:http"
import { pipeline } from "node:stream/promises"
import type { Credentials } from "./credentials.ts"

/** S3's single PUT takes at most 5 GiB; bigger files go in parts (tests lower it with ANNEAL_S3_MULTIPART_MB). */
const multipartAbove = (): number => Number(process.env.ANNEAL_S3_MULTIPART_MB ?? 4096) * 2 ** 20
const partBytes = (): number => Math.max(5 * 2 ** 20, Math.min(multipartAbove(), 512 * 2 ** 20))

export const EMPTY_SHA256 = "e3b0c44298fc1c149afbfc8996fb92427ae41e4649b934ca495991b7852b855"

/** A request the server answered with an error status, or could not be sent at all. */
export class S3RequestError extends Error {
  constructor(
    message: string,
    /** HTTP status, or 0 when no answer came (refused, DNS, timeout) */
    readonly status: number,
    /** the S3 error code (NoSuchKey, InvalidAccessKeyId, SignatureDoesNotMatch, ...) or the socket error's */
    readonly code: string
  ) {
    super(message)
  }
}

export interface S3Object {
  readonly key: string
  readonly size: number
  /** ms since the epoch */
  readonly lastModified: number
}

export interface S3ClientOptions {
  readonly bucket: string
  readonly region: string
  readonly endpoint: string | undefined
  readonly credentials: Credentials | undefined
}

const encodeRfc3986 = (s: string): string =>
  encodeURIComponent(s).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase())

const hmac = (key: Buffer | string, data: string): Buffer => createHmac("sha256", key).update(data).digest()
const hex = (data: string | Buffer): string => createHash("sha256").update(data).digest("hex")

/** S3 XML: the text of each `<tag>` (entities decoded); enough for ListObjectsV2 and error bodies. */
const xmlAll = (xml: string, tag: string): Array<string> =>
  [...xml.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, "g"))].map((m) =>
    m[1]!.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, "&"))

export class S3Client {
  private readonly base: URL
  private readonly virtualHost: boolean
  private readonly agent: http.Agent

  constructor(private readonly options: S3ClientOptions) {
    const endpoint = options.endpoint ?? `https://s3.${options.region}.amazonaws.com`
    this.base = new URL(endpoint)
    // AWS's own endpoint takes the bucket in the host name; S3-compatible servers in the path
    this.virtualHost = options.endpoint === undefined && /^[a-z0-9][a-z0-9-]*[a-z0-9]$/.test(options.bucket)
    // node:http loads with the first client, not with this module (its ESM form loads undici: tens of ms)
    const Agent = process.getBuiltinModule(this.base.protocol === "https:" ? "node:https" : "node:http").Agent
    this.agent = new Agent({ keepAlive: true, maxSockets: 16 })
  }

  close() {
    this.agent.destroy()
  }

  /** Where requests go, for messages: the endpoint's origin (never a credential). */
  get endpointName(): string {
    return this.base.origin
  }

  /** The server's clock (ms), from the Date of its last answer; this machine's until one came. */
  serverNow(): number {
    return this.clockSkew === undefined ? Date.now() : Date.now() + this.clockSkew
  }

  private clockSkew: number | undefined

  /** One page of a listing: a cheap request that proves the remote answers and takes the credentials. */
  async listPage(prefix: string, max: number): Promise<Array<string>> {
    const r = await this.request("GET", "", { "list-type": "2", prefix, "max-keys": String(max) }, {})
    return xmlAll(r.body.toString("utf8"), "Key")
  }

  /** Object metadata, or undefined when there is no such key. */
  async head(key: string): Promise<{ size: number; lastModified: number } | undefined> {
    const r = await this.request("HEAD", key, {}, { allow404: true })
    if (r.status === 404) return undefined
    return { size: Number(r.headers["content-length"] ?? 0), lastModified: Date.parse(String(r.headers["last-modified"] ?? "")) || 0 }
  }

  /** The object's bytes, or undefined when there is no such key. */
  async getBytes(key: string): Promise<Buffer | undefined> {
    const r = await this.request("GET", key, {}, { allow404: true })
    return r.status === 404 ? undefined : r.body
  }

  /**
   * Streams an object into `file`, hashing it on the way; returns its sha256 and size, or undefined
   * when there is no such key. The caller compares the hash with the content address it expected.
   */
  async getToFile(key: string, file: string): Promise<{ sha256: string; size: number; stat: fs.Stats } | undefined> {
    const res = await this.send("GET", key, {}, undefined)
    if (res.statusCode === 404) {
      res.resume()
      return undefined
    }
    if (res.statusCode !== 200) throw await this.failure("GET", key, res)
    const hash = createHash("sha256")
    let size = 0
    res.on("data", (chunk: Buffer) => {
      hash.update(chunk)
      size += chunk.length
    })
    const fd = fs.openSync(file, "wx")
    try {
      await pipeline(res, fs.createWriteStream(file, { fd, autoClose: false }))
      // read-only, then its stat, through the descriptor that wrote it: the signature a store's
      // commit compares against before it trusts the digest taken here (Store.commitVerified)
      fs.fchmodSync(fd, 0o444)
      return { sha256: hash.digest("hex"), size, stat: fs.fstatSync(fd) }
    } finally {
      fs.closeSync(fd)
    }
  }

  /** Uploads bytes (a small JSON object). */
  async putBytes(key: string, body: Buffer | string, contentType = "application/json"): Promise<void> {
    const buf = typeof body === "string" ? Buffer.from(body) : body
    await this.request("PUT", key, {}, { body: buf, contentType })
  }

  /** Uploads a file whose sha256 is known: the signed payload hash makes the server refuse any other body. */
  async putFile(key: string, file: string, size: number, sha256: string): Promise<void> {
    if (size > multipartAbove()) return this.putMultipart(key, file, size)
    const res = await this.send("PUT", key, {}, { stream: () => fs.createReadStream(file), size, sha256, contentType: "application/octet-stream" })
    if (res.statusCode !== 200) throw await this.failure("PUT", key, res)
    res.resume()
  }

  /**
   * A file over S3's single-PUT limit, in parts of PART_BYTES: each part's sha256 is computed first
   * (one extra read of the part) and signed, so the server checks every part as it does a whole blob.
   * The object appears only when the upload is completed; a failure aborts it, and a crash leaves an
   * incomplete upload the server never shows (bucket lifecycle rules expire those).
   */
  private async putMultipart(key: string, file: string, size: number): Promise<void> {
    const created = await this.request("POST", key, { uploads: "" }, { body: Buffer.alloc(0) })
    const uploadId = xmlAll(created.body.toString("utf8"), "UploadId")[0]
    if (uploadId === undefined) throw new S3RequestError(`POST ${key}?uploads: no UploadId in the answer`, created.status, "NoUploadId")
    try {
      const etags: Array<string> = []
      const step = partBytes()
      for (let part = 1, start = 0; start < size; part++, start += step) {
        const end = Math.min(size, start + step) - 1
        const hash = createHash("sha256")
        for await (const c of fs.createReadStream(file, { start, end })) hash.update(c as Buffer)
        const res = await this.send("PUT", key, { partNumber: String(part), uploadId }, {
          stream: () => fs.createReadStream(file, { start, end }), size: end - start + 1, sha256: hash.digest("hex"), contentType: "application/octet-stream"
        })
        if (res.statusCode !== 200) throw await this.failure("PUT", key, res)
        res.resume()
        etags.push(String(res.headers.etag ?? ""))
      }
      const xml = `<CompleteMultipartUpload>${etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${e.replace(/&/g, "&amp;").replace(/</g, "&lt;")}</ETag></Part>`).join("")}</CompleteMultipartUpload>`
      const done = await this.request("POST", key, { uploadId }, { body: Buffer.from(xml), contentType: "application/xml" })
      // S3 may answer 200 with an error in the body when completing
      const code = xmlAll(done.body.toString("utf8"), "Code")[0]
      if (code !== undefined) throw new S3RequestError(`POST ${key}?uploadId: ${code}`, done.status, code)
    } catch (e) {
      await this.request("DELETE", key, { uploadId }, { allow404: true }).catch(() => {})
      throw e
    }
  }

  async delete(key: string): Promise<void> {
    await this.request("DELETE", key, {}, { allow404: true })
  }

  /** Every object under `prefix` (ListObjectsV2, 1000 a page). */
  async list(prefix: string): Promise<Array<S3Object>> {
    const out: Array<S3Object> = []
    let token: string | undefined
    for (;;) {
      const query: Record<string, string> = { "list-type": "2", prefix, "max-keys": "1000" }
      if (token !== undefined) query["continuation-token"] = token
      const r = await this.request("GET", "", query, {})
      const xml = r.body.toString("utf8")
      for (const c of xmlAll(xml, "Contents")) {
        out.push({ key: xmlAll(c, "Key")[0] ?? "", size: Number(xmlAll(c, "Size")[0] ?? 0), lastModified: Date.parse(xmlAll(c, "LastModified")[0] ?? "") || 0 })
      }
      token = xmlAll(xml, "NextContinuationToken")[0]
      if (xmlAll(xml, "IsTruncated")[0] !== "true" || token === undefined) return out
    }
  }

  /** Creates the bucket if it is not there (tests and first use against a fresh server). */
  async ensureBucket(): Promise<void> {
    const res = await this.send("PUT", "", {}, undefined)
    if (res.statusCode === 200 || res.statusCode === 409) {
      res.resume()
      return
    }
    throw await this.failure("PUT", "", res)
  }

  private async request(
    method: string,
    key: string,
    query: Record<string, string>,
    options: { body?: Buffer; contentType?: string; allow404?: boolean }
  ): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
    const payload = options.body === undefined ? undefined : { bytes: options.body, sha256: hex(options.body), contentType: options.contentType ?? "application/octet-stream" }
    const res = await this.send(method, key, query, payload === undefined ? undefined : { ...payload, size: payload.bytes.length })
    const status = res.statusCode ?? 0
    const date = Date.parse(String(res.headers.date ?? ""))
    if (Number.isFinite(date)) this.clockSkew = date - Date.now()
    if (status === 404 && options.allow404 === true) {
      res.resume()
      return { status, headers: res.headers, body: Buffer.alloc(0) }
    }
    if (status < 200 || status >= 300) throw await this.failure(method, key, res)
    const chunks: Array<Buffer> = []
    for await (const c of res) chunks.push(c as Buffer)
    return { status, headers: res.headers, body: Buffer.concat(chunks) }
  }

  private async failure(method: string, key: string, res: http.IncomingMessage): Promise<S3RequestError> {
    const chunks: Array<Buffer> = []
    try {
      for await (const c of res) chunks.push(c as Buffer)
    } catch {
      // the body is only for the message
    }
    const xml = Buffer.concat(chunks).toString("utf8")
    const status = res.statusCode ?? 0
    const code = xmlAll(xml, "Code")[0] ?? (status === 403 ? "AccessDenied" : status === 404 ? "NotFound" : `HTTP${status}`)
    const detail = xmlAll(xml, "Message")[0]
    return new S3RequestError(`${method} ${key === "" ? "bucket" : key}: ${status} ${code}${detail === undefined || detail === "" ? "" : ` (${detail})`}`, status, code)
  }

  /** Signs and sends one request; the response is returned unread. */
  private send(
    method: string,
    key: string,
    query: Record<string, string>,
    payload: { bytes?: Buffer; stream?: () => fs.ReadStream; size: number; sha256: string; contentType: string } | undefined
  ): Promise<http.IncomingMessage> {
    const url = new URL(this.base.toString())
    const basePath = url.pathname.replace(/\/$/, "")
    const objectPath = (this.virtualHost ? "" : `/${this.options.bucket}`) + (key === "" ? (this.virtualHost ? "/" : "") : "/" + key.split("/").map(encodeRfc3986).join("/"))
    if (this.virtualHost) url.hostname = `${this.options.bucket}.${url.hostname}`
    const canonicalUri = basePath + (objectPath === "" ? "/" : objectPath)
    const canonicalQuery = Object.keys(query).sort().map((k) => `${encodeRfc3986(k)}=${encodeRfc3986(query[k]!)}`).join("&")
    const amzDate = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "")
    const day = amzDate.slice(0, 8)
    const payloadHash = payload?.sha256 ?? EMPTY_SHA256
    const headers: Record<string, string> = {
      host: url.host,
      "x-amz-content-sha256": payloadHash,
      "x-amz-date": amzDate
    }
    const creds = this.options.credentials
    if (creds?.sessionToken !== undefined) headers["x-amz-security-token"] = creds.sessionToken
    if (payload !== undefined) {
      headers["content-length"] = String(payload.size)
      headers["content-type"] = payload.contentType
    } else if (method === "PUT") headers["content-length"] = "0"
    if (creds !== undefined) {
      const signed = Object.keys(headers).sort()
      const canonicalRequest = [
        method,
        canonicalUri,
        canonicalQuery,
        signed.map((h) => `${h}:${headers[h]!.trim()}\n`).join(""),
        signed.join(";"),
        payloadHash
      ].join("\n")
      const scope = `${day}/${this.options.region}/s3/aws4_request`
      const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, hex(canonicalRequest)].join("\n")
      const kDate = hmac("AWS4" + creds.secretAccessKey, day)
      const kSigning = hmac(hmac(hmac(kDate, this.options.region), "s3"), "aws4_request")
      const signature = createHmac("sha256", kSigning).update(toSign).digest("hex")
      headers.authorization = `AWS4-HMAC-SHA256 Credential=${creds.accessKeyId}/${scope}, SignedHeaders=${signed.join(";")}, Signature=${signature}`
    }
    const lib = process.getBuiltinModule(url.protocol === "https:" ? "node:https" : "node:http")
    return new Promise((resolve, reject) => {
      const req = lib.request(
        {
          method,
          protocol: url.protocol,
          hostname: url.hostname,
          port: url.port === "" ? undefined : Number(url.port),
          path: canonicalUri + (canonicalQuery === "" ? "" : "?" + canonicalQuery),
          headers,
          agent: this.agent,
          timeout: 120_000
        },
        resolve
      )
      const fail = (e: Error) => {
        const code = (e as NodeJS.ErrnoException).code ?? "ERROR"
        reject(new S3RequestError(`${method} ${key === "" ? "bucket" : key}: ${e.message}`, 0, code))
      }
      req.on("error", fail)
      req.on("timeout", () => req.destroy(Object.assign(new Error(`no answer from ${url.host} in 120 s`), { code: "ETIMEDOUT" })))
      if (payload?.stream !== undefined) {
        const body = payload.stream()
        body.on("error", (e) => req.destroy(e))
        body.pipe(req)
      } else req.end(payload?.bytes)
    })
  }
}
