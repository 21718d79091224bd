/**
 * NEFTune (arXiv 2310.05914): the same SFT with and without noisy embeddings, from the same base on
 * the same Instruction data, evaluated side by side.
 *
 *   phi.ts's base (textbook corpus -> tokenizer -> pretrain)
 *      -> sft (plain)              -> eval -.
 *      -> sft (neftune alpha 5)    -> eval -+-> eval-compare (report.md: one column per model)
 *
 *   npx anneal run recipes/neftune.ts --allow-cpu    # a few minutes on CPU at the default tiny scale
 *   npx anneal show compare --recipe recipes/neftune.ts
 *
 * Scaling up to the paper (on GPUs): a Llama-2-7B base (`source.model("path/to/llama-2-7b")` instead of
 * phiBase), Alpaca 52k instructions, full fine-tuning, lr 5e-5 (here 5e-4), batch 128 (micro batch x
 * accumulation x GPUs), 3 epochs, maxLength 512, alpha 5 (the paper tries 5, 10 and 15). The paper's
 * headline is AlpacaEval win rate, a judged open-ended benchmark; the multiple-choice tasks of the Open
 * LLM Leaderboard (eval preset "leaderboard-v1") stayed flat in the paper, which is the other half of
 * its claim. NEFTune here is transformers' implementation: L is the padded batch length.
 */
import { evalCompare, recipe, sft } from "anneal"
import { phiBase, phiEval, phiQuiz } from "./phi.ts"
import { textbookInstructions } from "./textbooks.ts"

export default recipe("neftune", () => {
  const { model: base } = phiBase()
  const instructions = textbookInstructions({}, { variants: 4 }, { id: "instructions" })

  const tuning = {
    adapter: "full", // the paper fine-tunes every weight
    template: "alpaca",
    learningRate: 5e-4, // paper: 5e-5 at 7B
    lrScheduler: "cosine",
    numEpochs: 3, // paper: 3
    microBatchSize: 8, // paper: 128 global
    maxLength: 256 // paper: 512
  } as const
  const plain = sft({ model: base, data: instructions }, tuning, { id: "sft-plain" })
  const noisy = sft({ model: base, data: instructions }, { ...tuning, neftuneNoiseAlpha: 5 }, { id: "sft-neftune" })

  const quiz = phiQuiz()
  const reports = [phiEval(plain, quiz, "eval-plain"), phiEval(noisy, quiz, "eval-neftune")]
  evalCompare({ reports }, { names: ["sft", "sft + neftune"] }, { id: "compare" })
})
