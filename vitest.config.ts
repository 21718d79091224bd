import { defineConfig } from "vitest/config"

// Tests spawn real subprocesses (the CLI, Python workers) on 2-core machines: generous timeouts, and
// files run in forks so a killed child cannot take the runner down.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts", "test/**/*.test.tsx"],
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 300_000,
    reporters: ["default"]
  }
})
