/** Writes python/anneal_worker/row_formats.json from the TS row schemas (steps/data/row-formats.ts). */
import * as fs from "node:fs"
import { rowFormatSpecFile, rowFormatSpecText } from "../steps/data/row-formats.ts"

fs.writeFileSync(rowFormatSpecFile, rowFormatSpecText())
process.stdout.write(`wrote ${rowFormatSpecFile}\n`)
