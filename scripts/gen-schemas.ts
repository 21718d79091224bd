/** Writes schema/*.schema.json (the command-step contract) from the effect Schemas in engine/protocol.ts. */
import * as fs from "node:fs"
import * as path from "node:path"
import { publishedSchemas, schemaFileText } from "../engine/protocol.ts"

const dir = path.join(import.meta.dirname, "..", "schema")
fs.mkdirSync(dir, { recursive: true })
for (const name of Object.keys(publishedSchemas) as Array<keyof typeof publishedSchemas>) {
  fs.writeFileSync(path.join(dir, name), schemaFileText(name))
  process.stdout.write(`wrote schema/${name}\n`)
}
