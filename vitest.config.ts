import { defaultClientConditions, defaultExternalConditions, defaultServerConditions } from "vite"
import { defineConfig } from "vitest/config"

// Tests spawn real subprocesses (the CLI, Python workers) on 2-core machines: generous timeouts, and
// files run in forks so a killed child cannot take the runner down.
export default defineConfig({
  // `import ... from "anneal"` (recipes, test projects) resolves to the TypeScript sources, as in the CLI
  // (added to vite's defaults, which a `conditions` list would otherwise replace)
  resolve: { conditions: ["anneal-dev", ...defaultClientConditions] },
  ssr: {
    resolve: {
      conditions: ["anneal-dev", ...defaultServerConditions],
      externalConditions: ["anneal-dev", ...defaultExternalConditions]
    }
  },
  test: {
    include: ["test/**/*.test.ts", "test/**/*.test.tsx"],
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 300_000,
    reporters: ["default"]
  }
})
