/**
 * Generates the small Instruction dataset and benchmark sample the Platypus recipe curates:
 *   npx tsx recipes/data/generate-platypus.ts
 * writes platypus-train.jsonl and platypus-bench.jsonl beside this file (both committed). Deterministic.
 *
 * What is planted, so each curation step has something to find (the counts are in the file's
 * `expected` export, which the recipe's test checks):
 * - dirty rows for `clean`: an empty output, control characters and odd whitespace, a one-word row;
 * - exact duplicates for `dedup` (exact): the same instruction with other case/spacing and a shorter answer;
 * - paraphrases for `dedup-semantic`: the same question in other words, with a shorter answer;
 * - benchmark leaks for `decontaminate`: a verbatim copy, a copy behind a preamble, a copy with one
 *   detail changed (a different answer), and a paraphrase only embeddings can see.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

interface Row {
  instruction: string
  input?: string
  output: string
}

/** Distinct STEM and logic questions (the kept core of the dataset). */
const base: Array<Row> = [
  { instruction: "Explain why the sky appears blue during the day.", output: "Sunlight scatters off air molecules; shorter blue wavelengths scatter much more strongly (Rayleigh scattering, proportional to 1/λ^4), so blue light reaches our eyes from every direction of the sky." },
  { instruction: "What is the derivative of x^3 + 2x?", output: "Differentiate term by term: d/dx x^3 = 3x^2 and d/dx 2x = 2, so the derivative is 3x^2 + 2." },
  { instruction: "Balance the chemical equation for the combustion of methane.", output: "CH4 + 2 O2 -> CO2 + 2 H2O. One carbon and four hydrogens on each side, and four oxygens on each side." },
  { instruction: "If all bloops are razzies and all razzies are lazzies, are all bloops lazzies?", output: "Yes. The relation 'is a' is transitive: every bloop is a razzie, every razzie is a lazzie, so every bloop is a lazzie." },
  { instruction: "Write a Python function that returns the factorial of n.", output: "def factorial(n):\n    result = 1\n    for k in range(2, n + 1):\n        result *= k\n    return result" },
  { instruction: "What is the time complexity of binary search?", output: "O(log n): each comparison halves the remaining search interval." },
  { instruction: "A train travels 180 km in 2.5 hours. What is its average speed?", output: "Average speed = distance / time = 180 km / 2.5 h = 72 km/h." },
  { instruction: "Name the process by which plants convert light into chemical energy.", output: "Photosynthesis: chlorophyll absorbs light and the plant turns carbon dioxide and water into glucose and oxygen." },
  { instruction: "Solve for x: 3x - 7 = 11.", output: "Add 7 to both sides: 3x = 18. Divide by 3: x = 6." },
  { instruction: "What does DNA stand for?", output: "Deoxyribonucleic acid." },
  { instruction: "How many prime numbers are there between 1 and 20?", output: "Eight: 2, 3, 5, 7, 11, 13, 17 and 19." },
  { instruction: "Describe the difference between mitosis and meiosis.", output: "Mitosis makes two genetically identical diploid cells for growth and repair; meiosis makes four genetically distinct haploid gametes through two divisions with crossing over." },
  { instruction: "What is Ohm's law?", output: "The current through a conductor is proportional to the voltage across it: V = I R, where R is the resistance." },
  { instruction: "Convert 98.6 degrees Fahrenheit to Celsius.", output: "C = (F - 32) × 5/9 = (98.6 - 32) × 5/9 = 37 °C." },
  { instruction: "Why do ice cubes float in water?", output: "Ice is less dense than liquid water: hydrogen bonds hold the molecules in an open hexagonal lattice, so the ice displaces its weight in water before it is fully submerged." },
  { instruction: "What is the sum of the interior angles of a hexagon?", output: "(n - 2) × 180° with n = 6 gives 720°." },
  { instruction: "Explain what a hash table is.", output: "A hash table stores key-value pairs in an array, using a hash function to map each key to a slot; lookups, inserts and deletes take O(1) time on average." },
  { instruction: "What is the pH of a neutral solution at 25 °C?", output: "7, because the concentrations of H+ and OH- ions are equal (10^-7 mol/L each)." },
  { instruction: "A bag has 3 red and 5 blue marbles. What is the probability of drawing a red one?", output: "3 favourable outcomes out of 8: the probability is 3/8 = 0.375." },
  { instruction: "Who proposed the theory of general relativity?", output: "Albert Einstein, in 1915." },
  { instruction: "What is the integral of 1/x?", output: "ln|x| + C." },
  { instruction: "Explain recursion with an example.", output: "A recursive function calls itself on a smaller input until a base case. Example: fib(n) = fib(n-1) + fib(n-2) with fib(0) = 0 and fib(1) = 1." },
  { instruction: "What gas do humans exhale that plants absorb?", output: "Carbon dioxide (CO2)." },
  { instruction: "Is the statement 'this sentence is false' true or false?", output: "Neither: it is the liar paradox. If it were true it would be false, and if false it would be true, so classical logic cannot assign it a truth value." },
  { instruction: "What is the speed of light in a vacuum?", output: "About 299,792 kilometres per second (exactly 299,792,458 m/s)." },
  { instruction: "How does a transistor act as a switch?", output: "A small current at the base (or voltage at the gate) controls a much larger current between collector and emitter (or drain and source): with no input the path is off, with enough input it is fully on." },
  { instruction: "Find the greatest common divisor of 48 and 180.", output: "48 = 2^4 × 3 and 180 = 2^2 × 3^2 × 5, so gcd = 2^2 × 3 = 12." },
  { instruction: "What causes the seasons on Earth?", output: "The tilt of Earth's axis (about 23.4°): as Earth orbits, each hemisphere takes turns leaning towards the Sun, getting more direct sunlight and longer days." },
  { instruction: "Explain the difference between a list and a tuple in Python.", output: "Lists are mutable (you can change, add and remove items); tuples are immutable, hashable when their items are, and slightly cheaper." },
  { instruction: "What is the chemical symbol for gold?", output: "Au, from the Latin aurum." },
  { instruction: "Three friends split a bill of $84 equally. How much does each pay?", output: "$84 / 3 = $28 each." },
  { instruction: "What is an eigenvector?", output: "A non-zero vector v whose direction a linear map A keeps: A v = λ v for some scalar λ, its eigenvalue." },
  { instruction: "Describe how vaccines train the immune system.", output: "A vaccine shows the immune system a harmless piece or weakened form of a pathogen; it makes antibodies and memory cells, so a later real infection is recognised and cleared quickly." },
  { instruction: "What is Newton's second law of motion?", output: "The net force on a body equals its mass times its acceleration: F = m a." },
  { instruction: "Sort the numbers 42, 7, 19, 3 in ascending order.", output: "3, 7, 19, 42." },
  { instruction: "What is the main function of red blood cells?", output: "Carrying oxygen from the lungs to the tissues, bound to haemoglobin, and bringing some carbon dioxide back." },
  { instruction: "If a statement implies its own negation, what can we conclude?", output: "The statement is false: from P -> not P, assuming P yields a contradiction, so not P holds (reductio ad absurdum)." },
  { instruction: "How many bits are in a byte?", output: "Eight." },
  { instruction: "What is the boiling point of water at sea level in Kelvin?", output: "373.15 K (100 °C)." },
  { instruction: "Explain what an API is to a beginner.", output: "An API (application programming interface) is a menu of requests one program offers to others: you ask for something in the agreed format and get an answer back, without knowing how it works inside." },
  { instruction: "A rectangle has sides 7 cm and 24 cm. How long is its diagonal?", output: "By Pythagoras: √(7² + 24²) = √(49 + 576) = √625 = 25 cm." },
  { instruction: "What is the role of mitochondria in a cell?", output: "They produce most of the cell's ATP through cellular respiration, which is why they are called the powerhouse of the cell." }
]

/** Exact duplicates: an earlier instruction with other case and spacing, and a shorter answer. */
const exactDuplicates: Array<Row> = [
  { instruction: "what is the derivative of  x^3 + 2x?", output: "3x^2 + 2" },
  { instruction: "WHAT IS OHM'S LAW?", output: "V = IR." },
  { instruction: "Solve for x:  3x - 7 = 11.", output: "x = 6" },
  { instruction: "What is the chemical symbol for gold?", output: "Au" },
  { instruction: "how many bits are in a byte?", output: "8" }
]

/** Paraphrases: an earlier question in other words, with a shorter answer. */
const paraphrases: Array<Row> = [
  { instruction: "Why does the daytime sky look blue?", output: "Rayleigh scattering." },
  { instruction: "What is the average speed of a train that covers 180 km in 2.5 hours?", output: "72 km/h." },
  { instruction: "Why does ice float on water?", output: "It is less dense." },
  { instruction: "What is the role of the mitochondria inside a cell?", output: "Making ATP." }
]

/** Rows `clean` removes (or repairs). */
const dirty: Array<Row> = [
  { instruction: "Explain quantum entanglement.", output: "" },
  { instruction: "   ", output: "An answer without a question." },
  { instruction: "Ok", output: "ok" }
]
const repaired: Array<Row> = [{ instruction: "What  is\u00a0the\tatomic number of carbon?\u0007", output: "Six:  a carbon atom has\r\nsix protons." }]

/** The benchmark sample (multiple choice: question, choices, answer index). */
export const bench = [
  { question: "A ball is thrown straight up at 20 m/s. Ignoring air resistance and taking g = 10 m/s^2, how long does it take to reach its highest point?", choices: ["1 s", "2 s", "4 s", "20 s"], answer: 1 },
  { question: "Which of the following organelles is the site of protein synthesis in a eukaryotic cell, reading messenger RNA to build chains of amino acids?", choices: ["Ribosome", "Lysosome", "Golgi body", "Vacuole"], answer: 0 },
  { question: "In a right triangle the two legs measure 9 cm and 12 cm. What is the length of the hypotenuse of the triangle in centimetres?", choices: ["13", "15", "17", "21"], answer: 1 },
  { question: "Which planet in our solar system has the shortest orbital period around the Sun, completing one orbit in about 88 Earth days?", choices: ["Venus", "Mercury", "Mars", "Earth"], answer: 1 },
  { question: "What is the value of the expression 2 to the power of 10, the number of bytes in one kibibyte of computer memory?", choices: ["512", "1000", "1024", "2048"], answer: 2 },
  { question: "Which element has the highest electronegativity on the Pauling scale of all the elements in the periodic table?", choices: ["Oxygen", "Chlorine", "Fluorine", "Nitrogen"], answer: 2 }
]

/** Training rows that leak benchmark questions. */
const leaks: Array<Row> = [
  // verbatim copy: "duplicate"
  { instruction: bench[0]!.question, output: "At the top the velocity is zero: t = v / g = 20 / 10 = 2 s." },
  // the question behind a preamble, same answer: "gray area"
  { instruction: "I found this on a practice test and I want to understand it step by step:", input: bench[2]!.question, output: "√(9² + 12²) = √225 = 15 cm." },
  // one detail changed, so the answer differs: "similar but different" (still shares a 13-gram)
  { instruction: bench[1]!.question.replace("protein synthesis", "lipid synthesis"), output: "The smooth endoplasmic reticulum." },
  // one detail changed and no 13-gram shared: only the semantic method sees it ("similar but different")
  { instruction: bench[3]!.question.replace("shortest", "longest").replace(", completing one orbit in about 88 Earth days", ""), output: "Neptune, which takes about 165 years." },
  // a paraphrase without a shared 13-gram: only the semantic method sees it
  { instruction: "On the Pauling scale, which element is the most electronegative of all?", output: "Fluorine." }
]

/** What the curation stage should remove, step by step (checked by the recipe's test). */
export const expected = {
  rows: base.length + exactDuplicates.length + paraphrases.length + dirty.length + repaired.length + leaks.length,
  clean: dirty.length,
  exact: exactDuplicates.length,
  semantic: paraphrases.length,
  ngramLeaks: 3,
  semanticLeaks: 2
}

/** A fixed shuffle, so planted rows are spread through the file. */
const shuffle = <T>(xs: Array<T>, seed: number): Array<T> => {
  const out = xs.slice()
  let s = seed
  for (let i = out.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff
    const j = s % (i + 1)
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

const jsonl = (rows: ReadonlyArray<object>): string => rows.map((r) => JSON.stringify(r)).join("\n") + "\n"

/** The two files' contents. */
export const generate = (): { readonly train: string; readonly bench: string } => {
  // originals first so "keep first" and "keep longest" agree on which row of a pair survives
  const planted = shuffle([...exactDuplicates, ...paraphrases, ...dirty, ...repaired, ...leaks], 7)
  return { train: jsonl([...shuffle(base, 3), ...planted]), bench: jsonl(bench) }
}

export const dataDir = path.dirname(fileURLToPath(import.meta.url))

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = generate()
  fs.writeFileSync(path.join(dataDir, "platypus-train.jsonl"), out.train)
  fs.writeFileSync(path.join(dataDir, "platypus-bench.jsonl"), out.bench)
  console.log(`wrote ${expected.rows} training rows and ${bench.length} benchmark items to ${dataDir}`)
}
