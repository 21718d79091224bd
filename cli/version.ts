import * as fs from "node:fs"
import { projectRoot } from "../engine/python.ts"

export const version: string = (JSON.parse(fs.readFileSync(`${projectRoot}/package.json`, "utf8")) as { version: string }).version
