/**
 * A Node for cluster jobs that must not see a directory (the driver's store, as on nodes that share no
 * filesystem with the driver): a shell wrapper, written into `dir`, that runs Node in a mount namespace
 * with an empty tmpfs over `hidden`.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { nodeBinary } from "../../engine/executors/cluster-executor.ts"

export const nodeWithout = (dir: string, hidden: string): string => {
  const wrapper = path.join(dir, `node-without-${path.basename(hidden)}.sh`)
  fs.writeFileSync(wrapper, [
    "#!/bin/sh",
    `exec unshare --mount --propagation private sh -c 'mount -t tmpfs anneal-hidden "$1" && shift && exec "$@"' sh ${JSON.stringify(hidden)} ${JSON.stringify(nodeBinary())} "$@"`,
    ""
  ].join("\n"), { mode: 0o755 })
  return wrapper
}
