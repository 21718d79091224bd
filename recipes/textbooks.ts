/**
 * A generator of "textbook-style" synthetic data, in the spirit of phi-1.5 (arXiv 2309.05463), whose
 * 20B synthetic tokens were seeded from 20k hand-picked topics: here a few dozen topics x a handful of
 * templates (a definition, a worked example, a story, review questions, an exercise with its answer),
 * with a seeded PRNG choosing the wording, so the data (and the keys of everything downstream) are stable.
 *
 * Three step kinds share the same topics, so a model pretrained on the corpus can be tuned and tested on
 * the same knowledge: `textbook-corpus` (Text), `textbook-instructions` (Instruction), `textbook-quiz`
 * (multiple-choice rows {question, choices, answer} for the eval step).
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { defineStep, Instruction, Port, PositiveInt, Schema, Text, withDefault } from "anneal"

interface Topic {
  readonly name: string
  readonly field: string
  readonly definition: string
  readonly example: string
}

export const topics: ReadonlyArray<Topic> = [
  { name: "photosynthesis", field: "biology", definition: "the process by which plants turn light, water and carbon dioxide into sugar and oxygen", example: "a leaf in the sun making sugar for the tree" },
  { name: "the cell", field: "biology", definition: "the smallest unit of life, enclosed by a membrane", example: "a red blood cell carrying oxygen" },
  { name: "evolution", field: "biology", definition: "the change in the traits of living things over many generations", example: "finches whose beaks changed with the seeds on their island" },
  { name: "the food chain", field: "biology", definition: "the path of energy from plants to the animals that eat them", example: "grass eaten by a rabbit that is eaten by a fox" },
  { name: "gravity", field: "physics", definition: "the force that pulls masses toward each other", example: "an apple falling from a tree to the ground" },
  { name: "friction", field: "physics", definition: "the force that resists two surfaces sliding past each other", example: "a sled slowing down on rough snow" },
  { name: "electric current", field: "physics", definition: "the flow of electric charge through a conductor", example: "electrons moving through a copper wire to light a lamp" },
  { name: "sound waves", field: "physics", definition: "vibrations that travel through air, water or solids", example: "a drum whose skin shakes the air around it" },
  { name: "atoms", field: "chemistry", definition: "the tiny particles that every substance is made of", example: "two hydrogen atoms and one oxygen atom forming water" },
  { name: "acids", field: "chemistry", definition: "substances that give away hydrogen ions and taste sour", example: "lemon juice turning blue litmus paper red" },
  { name: "chemical reactions", field: "chemistry", definition: "processes in which substances change into new substances", example: "iron rusting when it meets water and air" },
  { name: "fractions", field: "mathematics", definition: "numbers that describe parts of a whole", example: "one half of a pizza cut into two equal pieces" },
  { name: "prime numbers", field: "mathematics", definition: "whole numbers greater than one that only one and themselves divide", example: "seven, which no smaller number except one divides" },
  { name: "the area of a rectangle", field: "mathematics", definition: "the length of a rectangle multiplied by its width", example: "a garden three meters long and two meters wide covering six square meters" },
  { name: "probability", field: "mathematics", definition: "a number between zero and one that says how likely an event is", example: "a fair coin landing heads with probability one half" },
  { name: "rivers", field: "geography", definition: "streams of fresh water flowing from high ground to the sea", example: "the Nile flowing north through Egypt" },
  { name: "volcanoes", field: "geography", definition: "openings in the crust where molten rock reaches the surface", example: "lava pouring from a mountain in Iceland" },
  { name: "climate", field: "geography", definition: "the usual weather of a place over many years", example: "the hot and wet climate of a rainforest" },
  { name: "the printing press", field: "history", definition: "a machine from the fifteenth century that printed many copies of a page", example: "Gutenberg printing Bibles in Mainz" },
  { name: "ancient Rome", field: "history", definition: "a city and empire that ruled the Mediterranean for centuries", example: "Roman roads that still cross Europe" },
  { name: "algorithms", field: "computer science", definition: "step-by-step procedures for solving a problem", example: "a recipe for sorting cards from smallest to largest" },
  { name: "variables", field: "computer science", definition: "names that hold values in a program", example: "a variable named count that goes up by one each loop" },
  { name: "loops", field: "computer science", definition: "instructions that repeat a block of code", example: "a loop that prints the numbers from one to ten" },
  { name: "supply and demand", field: "economics", definition: "the idea that prices rise when many want what is scarce", example: "umbrella prices going up on a rainy day" },
  { name: "money", field: "economics", definition: "anything people accept in exchange for goods and services", example: "coins used to buy bread at a market" }
]

export const fields = [...new Set(topics.map((t) => t.field))]

/** A small seeded PRNG (a linear congruential generator), so generated data never drifts. */
const prng = (seed: number) => {
  let s = (seed * 2654435761) >>> 0 || 1
  return () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0
    return s / 4294967296
  }
}

const capital = (s: string) => s.charAt(0).toUpperCase() + s.slice(1)

type Template = (t: Topic, pick: <T>(xs: ReadonlyArray<T>) => T, n: number) => string

const templates: ReadonlyArray<Template> = [
  (t, pick, n) =>
    `Chapter ${n}: ${capital(t.name)}\n\n${capital(t.name)} is ${t.definition}. ${pick(["Students of", "Anyone who studies", "Every course in"])} ${t.field} ${pick(["meets this idea early", "returns to it often", "builds on it"])}. ${pick(["For example", "For instance", "Think of"])} ${t.example}. ${pick(["Remember", "Keep in mind", "Note"])}: ${t.name} is ${t.definition}.`,
  (t, pick) =>
    `Let us imagine ${pick(["a curious student named Ana", "two friends, Ben and Mia", "a teacher and her class"])} learning about ${t.name}. ${pick(["She asked", "They wondered", "The class asked"])} what it means. The answer: ${t.name} is ${t.definition}. ${pick(["They saw it in", "A good picture is", "One example is"])} ${t.example}. That is why ${t.name} matters in ${t.field}.`,
  (t, pick) =>
    `Worked example (${t.field}). Consider ${t.example}. This shows ${t.name}, which is ${t.definition}. ${pick(["Step by step", "Carefully", "In short"])}, we name the idea, we find it in the example, and we explain why it fits.`,
  (t, pick) =>
    `Review questions on ${t.name}.\nQuestion: Which field studies ${t.name}?\nAnswer: ${capital(t.field)}.\nQuestion: What is ${t.name}?\nAnswer: ${capital(t.name)} is ${t.definition}.\nQuestion: Give an example.\nAnswer: ${capital(t.example)}. ${pick(["Well done.", "Good work.", "Check your answers."])}`,
  (t, pick, n) =>
    `Exercise ${n}. In ${t.field}, explain ${t.name} to a friend.\nSolution: ${capital(t.name)} is ${t.definition}. ${pick(["A simple example is", "You can point to", "Show them"])} ${t.example}.`
]

const writeDataset = async (dir: string, format: string, rows: ReadonlyArray<unknown>): Promise<void> => {
  await fs.writeFile(path.join(dir, "data.jsonl"), rows.map((r) => JSON.stringify(r)).join("\n") + "\n")
  await fs.writeFile(path.join(dir, "dataset.json"), JSON.stringify({ format, rows: rows.length }) + "\n")
}

const GeneratorParams = Schema.Struct({
  /** how many of the built-in topics to use (phi-1.5 seeded its data from 20k topics) */
  topics: withDefault(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: topics.length })), topics.length),
  /** documents per topic and template, each with different wording */
  variants: withDefault(PositiveInt, 4),
  seed: withDefault(Schema.Int, 0)
})

/** The textbook corpus as plain rows (exported for tests and other generators). */
export const textbookDocuments = (p: { topics: number; variants: number; seed: number }): Array<Text> => {
  const rand = prng(p.seed)
  const pick = <T>(xs: ReadonlyArray<T>): T => xs[Math.floor(rand() * xs.length)]!
  const docs: Array<Text> = []
  let n = 1
  for (let v = 0; v < p.variants; v++) {
    for (const t of topics.slice(0, p.topics)) {
      for (const template of templates) docs.push({ text: template(t, pick, n++) })
    }
  }
  return docs
}

export const textbookCorpus = defineStep({
  kind: "textbook-corpus",
  version: 1,
  description: "generate textbook-style synthetic text (topics x templates), phi-1.5 style",
  params: GeneratorParams,
  inputs: {},
  output: Port.dataset(Text),
  run: async (ctx) => {
    const docs = textbookDocuments(ctx.params)
    await writeDataset(ctx.output, "text", docs)
    ctx.metric("rows", docs.length)
  }
})

export const textbookInstructions = defineStep({
  kind: "textbook-instructions",
  version: 1,
  description: "generate Alpaca-style instructions about the textbook topics",
  params: GeneratorParams,
  inputs: {},
  output: Port.dataset(Instruction),
  run: async (ctx) => {
    const rand = prng(ctx.params.seed + 1)
    const pick = <T>(xs: ReadonlyArray<T>): T => xs[Math.floor(rand() * xs.length)]!
    const rows: Array<Instruction> = []
    for (let v = 0; v < ctx.params.variants; v++) {
      for (const t of topics.slice(0, ctx.params.topics)) {
        rows.push({ instruction: pick(["Explain", "Define", "Describe"]) + ` ${t.name}.`, output: `${capital(t.name)} is ${t.definition}.` })
        rows.push({ instruction: `Which field studies ${t.name}?`, output: `${capital(t.name)} is studied in ${t.field}.` })
        rows.push({ instruction: "Give an example of this idea.", input: t.name, output: `One example is ${t.example}.` })
      }
    }
    await writeDataset(ctx.output, "instruction", rows)
    ctx.metric("rows", rows.length)
  }
})

export const textbookQuiz = defineStep({
  kind: "textbook-quiz",
  version: 1,
  description: "generate a multiple-choice quiz on the textbook topics ({question, choices, answer})",
  params: GeneratorParams,
  inputs: {},
  output: Port.anyDataset(),
  run: async (ctx) => {
    const rand = prng(ctx.params.seed + 2)
    const rows = topics.slice(0, ctx.params.topics).map((t) => {
      const others = fields.filter((f) => f !== t.field).sort(() => rand() - 0.5).slice(0, 3)
      const choices = [...others]
      const answer = Math.floor(rand() * 4)
      choices.splice(answer, 0, t.field)
      return { question: `Which field studies ${t.name}?`, choices, answer }
    })
    await writeDataset(ctx.output, "any", rows)
    ctx.metric("rows", rows.length)
  }
})
