/**
 * Generates the demo recipe's data (committed under recipes/data/demo/; rerun to regenerate):
 *
 *   npx tsx recipes/data/generate-demo.ts
 *
 * - instructions.jsonl: Alpaca-style rows built from topic x template grids (arithmetic, unit
 *   conversion, definitions, comparisons), with planted exact duplicates (same question, a shorter and
 *   a longer answer), near-duplicates (a word or two changed), whitespace/control-character noise,
 *   rows too short to keep, and copies of benchmark questions (leaks).
 * - benchmark.jsonl: a small multiple-choice benchmark sample ({question, choices, answer}).
 * Deterministic: a fixed-seed PRNG, so the files (and so the demo's keys) never drift.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const out = path.join(path.dirname(fileURLToPath(import.meta.url)), "demo")

let seed = 20231
const rand = () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
  return seed / 4294967296
}
const pick = <T>(xs: ReadonlyArray<T>): T => xs[Math.floor(rand() * xs.length)]!

interface Row {
  instruction: string
  input?: string
  output: string
}

const rows: Array<Row> = []

// arithmetic with worked answers
for (let i = 0; i < 600; i++) {
  const a = 10 + Math.floor(rand() * 990)
  const b = 2 + Math.floor(rand() * 98)
  const op = pick(["+", "-", "*"] as const)
  const value = op === "+" ? a + b : op === "-" ? a - b : a * b
  const verb = op === "+" ? "the sum of" : op === "-" ? "the difference between" : "the product of"
  rows.push({
    instruction: `Compute ${verb} ${a} and ${b}.`,
    output: `${a} ${op} ${b} = ${value}. The answer is ${value}.`
  })
}

// unit conversions
const units: ReadonlyArray<[string, string, number]> = [
  ["kilometres", "metres", 1000],
  ["metres", "centimetres", 100],
  ["hours", "minutes", 60],
  ["minutes", "seconds", 60],
  ["kilograms", "grams", 1000],
  ["litres", "millilitres", 1000],
  ["days", "hours", 24]
]
for (let i = 0; i < 500; i++) {
  const [from, to, f] = pick(units)
  const x = 1 + Math.floor(rand() * 250)
  rows.push({
    instruction: `Convert ${x} ${from} to ${to}.`,
    output: `There are ${f} ${to} in one ${from.replace(/s$/, "")}, so ${x} ${from} is ${x} x ${f} = ${x * f} ${to}.`
  })
}

// definitions and comparisons, from a small topic grid
const topics: ReadonlyArray<[string, string]> = [
  ["photosynthesis", "the process by which plants use light, water and carbon dioxide to make glucose and oxygen"],
  ["a prime number", "a whole number greater than 1 whose only divisors are 1 and itself"],
  ["inertia", "the tendency of an object to keep its state of motion unless a force acts on it"],
  ["an algorithm", "a finite sequence of well-defined steps that solves a problem"],
  ["entropy", "a measure of the number of microscopic arrangements consistent with a system's macroscopic state"],
  ["a derivative", "the instantaneous rate of change of a function with respect to its variable"],
  ["osmosis", "the movement of water across a semipermeable membrane from low to high solute concentration"],
  ["a hash function", "a function that maps data of any size to a fixed-size value, ideally spreading inputs evenly"],
  ["recursion", "defining something in terms of a smaller instance of itself, with a base case that stops it"],
  ["a catalyst", "a substance that speeds up a chemical reaction without being consumed by it"]
]
const styles = [
  (t: string) => `Explain what ${t} is.`,
  (t: string) => `Define ${t} in one sentence.`,
  (t: string) => `What is meant by ${t}?`,
  (t: string) => `Give a short definition of ${t} for a student.`
]
for (const [t, d] of topics) {
  for (const s of styles) {
    for (const audience of ["", " Keep it simple.", " Use precise language.", " Add an example."]) {
      rows.push({ instruction: s(t) + audience, output: `${t[0]!.toUpperCase()}${t.slice(1)} is ${d}.` })
    }
  }
}

// the benchmark: multiple choice, some of whose questions leak into the training rows
const benchmark = [
  { question: "A train travels 180 kilometres in 2 hours at constant speed. What is its speed in kilometres per hour?", choices: ["60", "90", "120", "360"], answer: 1 },
  { question: "Which gas do plants release as a by-product of photosynthesis when they are exposed to sunlight?", choices: ["Nitrogen", "Carbon dioxide", "Oxygen", "Methane"], answer: 2 },
  { question: "What is the smallest prime number that is greater than twenty and also less than thirty?", choices: ["21", "23", "27", "29"], answer: 1 },
  { question: "If a rectangle has a length of 8 metres and a width of 5 metres, what is its area in square metres?", choices: ["13", "26", "40", "80"], answer: 2 },
  { question: "Which property of matter describes an object's resistance to any change in its state of motion?", choices: ["Mass density", "Inertia", "Friction", "Elasticity"], answer: 1 },
  { question: "How many minutes are there in exactly three and a half hours of continuous time?", choices: ["180", "200", "210", "240"], answer: 2 },
  { question: "What is the derivative of x squared with respect to x for every real value of x?", choices: ["x", "2x", "x^2", "2"], answer: 1 },
  { question: "Which data structure follows the last in, first out principle for adding and removing items?", choices: ["Queue", "Stack", "Heap", "Tree"], answer: 1 }
]
const leaked = [0, 2, 4, 6]
for (const i of leaked) {
  const b = benchmark[i]!
  rows.push({ instruction: b.question, output: `The answer is ${b.choices[b.answer]}.` })
}

// planted duplicates: the same question with a shorter answer (exact dedup keeps the longer one)
const originals = rows.slice(0, 1100)
for (let i = 0; i < 120; i++) {
  const r = pick(originals)
  rows.push({ instruction: r.instruction, output: r.output.split(". ")[0]! + "." })
}
// near-duplicates: one word changed in a long answer (MinHash finds them)
for (let i = 0; i < 60; i++) {
  const r = pick(rows.slice(1100, 1100 + 160))
  rows.push({ instruction: r.instruction.replace("Explain", "Describe").replace("Define", "State"), output: r.output.replace(" the ", " a ") })
}
// noise the clean step repairs or drops
rows.push({ instruction: "Compute  the\tsum of 2 and 2.\u0007", output: "2 + 2 = 4." })
rows.push({ instruction: "Hi", output: "ok" })
rows.push({ instruction: "   ", output: "empty instruction" })

// shuffle deterministically so duplicates are not adjacent
for (let i = rows.length - 1; i > 0; i--) {
  const j = Math.floor(rand() * (i + 1))
  ;[rows[i], rows[j]] = [rows[j]!, rows[i]!]
}

fs.mkdirSync(out, { recursive: true })
fs.writeFileSync(path.join(out, "instructions.jsonl"), rows.map((r) => JSON.stringify(r)).join("\n") + "\n")
fs.writeFileSync(path.join(out, "benchmark.jsonl"), benchmark.map((r) => JSON.stringify(r)).join("\n") + "\n")

// the demo's own eval (recipes/demo.ts): multiple-choice questions in the fine-tuning rows' own wording,
// whose answers the fine-tuning data teaches and the base model never sees (it is pretrained on the
// instructions alone). Unit conversions use amounts above the training rows' 1-250, so a model must
// have learned the factor, not an answer; each wrong choice names another unit's factor. A separate
// PRNG, so the files above do not change when the quiz does.
let quizSeed = 7
const quizRand = () => {
  quizSeed = (Math.imul(quizSeed, 1103515245) + 12345) >>> 0
  return quizSeed / 4294967296
}
const quiz: Array<{ question: string; choices: Array<string>; answer: number }> = []
const factors = [...new Set(units.map(([, , f]) => f))]
units.forEach(([from, to, f], u) => {
  for (let k = 0; k < 3; k++) {
    const x = 251 + Math.floor(quizRand() * 250)
    const wrong = factors.filter((g) => g !== f).sort(() => quizRand() - 0.5).slice(0, 3)
    const answer = (u + k) % 4
    const options = [...wrong]
    options.splice(answer, 0, f)
    // the first sentence of the taught answer: the product's digits would only add noise at this scale
    const say = (g: number) => `There are ${g} ${to} in one ${from.replace(/s$/, "")}.`
    quiz.push({ question: `Convert ${x} ${from} to ${to}.`, choices: options.map(say), answer })
  }
})
topics.forEach(([t, d], i) => {
  // the same topic with another topic's definition as the wrong choices, so only the definition tells
  const others = topics.filter(([o]) => o !== t).sort(() => quizRand() - 0.5).slice(0, 3).map(([, od]) => od)
  const answer = i % 4
  const defs = [...others]
  defs.splice(answer, 0, d)
  const name = `${t[0]!.toUpperCase()}${t.slice(1)}`
  quiz.push({ question: styles[i % styles.length]!(t), choices: defs.map((x) => `${name} is ${x}.`), answer })
})
fs.writeFileSync(path.join(out, "quiz.jsonl"), quiz.map((r) => JSON.stringify(r)).join("\n") + "\n")

console.log(`wrote ${rows.length} instruction rows, ${benchmark.length} benchmark items and ${quiz.length} quiz items to ${out}`)
