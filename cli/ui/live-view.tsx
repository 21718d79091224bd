/** @jsxRuntime automatic */
/** @jsxImportSource react */
// (the pragmas make the JSX transform independent of the tsconfig in the user's working directory:
// bin/anneal.js registers tsx, which reads the tsconfig of the cwd, not this project's)
/**
 * The live view of a run. Settled steps go into Ink's `<Static>` (printed once, scrolled into the
 * terminal's history; a flood of cached ones as one line that counts them); only steps still waiting
 * or running are redrawn, under them the footer with totals and, on request, the key help or the
 * selected step's log tail.
 *
 * Everything it shows comes in as props (state, clock, width), so tests render it at a fixed width
 * and time; the only local state is what the keys change (selection, panels) and where each frame's
 * newly settled steps began (one <Static> block per frame).
 */
import { useRef, useState } from "react"
import { Box, Static, Text, useInput, useStdin } from "ink"
import type { RunState, StepView } from "./state.ts"
import { isSettled } from "./state.ts"
import {
  errorLines,
  foldCached,
  foldedLine,
  glyphs,
  pendingLine,
  progressLine,
  runningHead,
  settledLine,
  statusColors,
  totalsLines
} from "./lines.ts"
import { summaryTable } from "./summary-table.ts"
import { readLogTail } from "./log-tail.ts"
import { truncate } from "./format.ts"
import { makePaint } from "../render/paint.ts"
import type { Style } from "../render/paint.ts"

export interface LiveViewProps {
  readonly state: RunState
  /** the clock (ms) elapsed times and ETAs are measured against */
  readonly now: number
  readonly columns: number
  /** terminal height: pending steps beyond what fits are summarised in one line (a frame taller than
   * the terminal cannot be redrawn in place) */
  readonly rows?: number | undefined
  readonly color: boolean
  /** called on `q` or Ctrl-C; a second press calls it again (the caller may then force the exit) */
  readonly onInterrupt: () => void
  /** the run is over: show the summary table instead of the key hints */
  readonly finished?: boolean
  /** reads a log's last lines; tests pass a fake */
  readonly readTail?: (file: string, lines: number) => ReadonlyArray<string>
  /** how many log lines the `l` panel shows */
  readonly logLines?: number
}

/** `state.settled[from, to)`: the steps that settled between two frames, printed as one block */
interface SettledBatch {
  readonly key: string
  readonly from: number
  readonly to: number
}

type StaticItem = SettledBatch | { readonly key: string; readonly table: ReadonlyArray<string> }

const keyHelp = [
  ["q, Ctrl-C", "interrupt the run (steps stop cleanly, finished work stays cached)"],
  ["↑ ↓", "select a step"],
  ["l", "show or hide the selected step's log tail"],
  ["?", "show or hide this help"]
] as const

export const LiveView = (props: LiveViewProps) => {
  const { state, now, columns, color } = props
  const width = Math.max(20, columns)
  const paint = (c: string | undefined) => (color ? c : undefined)
  const [selected, setSelected] = useState<string | undefined>(undefined)
  const [panel, setPanel] = useState<"none" | "help" | "log">("none")
  const [interrupting, setInterrupting] = useState(false)
  const { isRawModeSupported } = useStdin()

  const live = state.order.map((id) => state.steps[id]!).filter((s) => !isSettled(s.status))
  // until someone presses an arrow, the selection follows the first running step
  const current = selected ?? live.find((s) => s.status === "running")?.id ?? state.order[0]

  useInput((input, key) => {
    if (input === "q" || (key.ctrl && input === "c")) {
      setInterrupting(true)
      props.onInterrupt()
    } else if (key.upArrow || key.downArrow) {
      const i = current === undefined ? -1 : state.order.indexOf(current)
      const j = key.upArrow ? Math.max(0, i - 1) : Math.min(state.order.length - 1, i + 1)
      setSelected(state.order[j])
    } else if (input === "l") {
      setPanel((p) => (p === "log" ? "none" : "log"))
    } else if (input === "?") {
      setPanel((p) => (p === "help" ? "none" : "help"))
    } else if (key.escape) {
      setPanel("none")
    }
  }, { isActive: isRawModeSupported === true && !props.finished })

  // running steps always show (two lines each); pending ones fill what is left of the screen
  const budget = Math.max(1, (props.rows ?? Infinity) - 6 - (panel === "none" ? 0 : (props.logLines ?? 10) + 3))
  const runningRows = live.filter((s) => s.status === "running")
  const pendingRoom = Math.max(0, budget - runningRows.length * 2)
  const pending = live.filter((s) => s.status !== "running")
  const keep = new Set([...runningRows, ...(pending.length <= pendingRoom ? pending : pending.slice(0, Math.max(0, pendingRoom - 1)))])
  const shown = live.filter((s) => keep.has(s) || s.id === current)
  const hidden = live.length - shown.length

  // what settled since the last frame is one <Static> item, printed as one block of lines: a row per
  // step as its own elements made a rerun of 10,000 cached steps spend seconds laying out 40,000 of them
  const batches = useRef<Array<SettledBatch>>([])
  const covered = batches.current.at(-1)?.to ?? 0
  if (state.settled.length > covered) batches.current.push({ key: `settled ${covered}`, from: covered, to: state.settled.length })
  const items: Array<StaticItem> = [...batches.current]
  // the summary table goes out through <Static> too: a live frame taller than the terminal makes Ink
  // clear the screen, which would wipe the steps printed above it on a big recipe
  if (props.finished === true && state.run !== undefined) items.push({ key: "summary", table: summaryTable(state, width) })
  const mark = (s: StepView) => (panel !== "none" || selected !== undefined) && s.id === current

  return (
    <>
      <Static items={items}>
        {(item) =>
          "from" in item
            ? <SettledRows key={item.key} steps={state.settled.slice(item.from, item.to).map((id) => state.steps[id]!)} width={width - 2} color={color} />
            : (
              <Box key={item.key} flexDirection="column" marginTop={1}>
                <Text bold>{item.table[0]}</Text>
                {item.table.length > 1 && <Text>{item.table.slice(1).join("\n")}</Text>}
              </Box>
            )}
      </Static>
      <Box flexDirection="column" width={width}>
        {shown.map((s) => (
          <LiveRow key={s.id} step={s} now={now} width={width - 2} color={color} selected={mark(s)}
            waitingFor={s.needs.filter((n) => !finishedOk(state.steps[n]))} />
        ))}
        {hidden > 0 && <Text dimColor>{truncate(`  … ${hidden} more step${hidden === 1 ? "" : "s"} waiting or queued`, width)}</Text>}
        {state.messages.slice(-3).map((m, i) => (
          <Text key={i} color={paint(m.level === "error" ? "red" : m.level === "warn" ? "yellow" : undefined)} wrap="truncate">
            {truncate(`${m.level}: ${m.message}`, width)}
          </Text>
        ))}
        {panel === "log" && current !== undefined && (
          <LogPanel step={state.steps[current]} width={width} color={color}
            lines={props.logLines ?? 10} readTail={props.readTail ?? readLogTail} />
        )}
        {panel === "help" && <HelpPanel width={width} />}
        <Box marginTop={props.finished === true ? 1 : 0} flexDirection="column">
          {totalsLines(state, now, width).map((l, i) => <Text key={i} bold>{l}</Text>)}
        </Box>
        {props.finished !== true && (
          <Text dimColor>
            {truncate(interrupting
              ? "interrupting: waiting for running steps to stop…"
              : isRawModeSupported === true
              ? `q quit  ↑↓ select${current !== undefined ? ` (${current})` : ""}  l log  ? keys`
              : "Ctrl-C interrupts", width)}
          </Text>
        )}
      </Box>
    </>
  )
}

const finishedOk = (s: StepView | undefined) => s !== undefined && (s.status === "done" || s.status === "cached")

/**
 * Settled steps, a line each (its glyph in the status colour) and a failed step's error under it; more
 * than `foldCachedAbove` plain cached ones in one frame are one line that counts them.
 */
const SettledRows = (props: { readonly steps: ReadonlyArray<StepView>; readonly width: number; readonly color: boolean }) => {
  const paint = makePaint(props.color)
  const lines: Array<string> = []
  const glyph = (line: string, status: StepView["status"]) => {
    const g = glyphs[status]
    const at = line.indexOf(g)
    const c = statusColors[status] as Style | undefined
    return "  " + line.slice(0, at) + (c === undefined ? g : paint(c, g)) + line.slice(at + g.length)
  }
  for (const s of foldCached(props.steps)) {
    if ("folded" in s) {
      lines.push(glyph(foldedLine(s.folded, props.width), "cached"))
      continue
    }
    lines.push(glyph(settledLine(s, props.width), s.status))
    for (const l of errorLines(s, props.width)) lines.push(paint("red", "  " + l))
  }
  // each line is already cut to the width: wrapping never applies (truncating would cut the block)
  return <Text>{lines.join("\n")}</Text>
}

const LiveRow = (props: {
  readonly step: StepView
  readonly now: number
  readonly width: number
  readonly color: boolean
  readonly selected: boolean
  readonly waitingFor: ReadonlyArray<string>
}) => {
  const s = props.step
  const c = props.color ? statusColors[s.status] : undefined
  const head = s.status === "running" ? runningHead(s, props.now, props.width) : pendingLine(s, props.width, props.waitingFor)
  const g = glyphs[s.status]
  const at = head.indexOf(g)
  const bar = s.status === "running" ? progressLine(s, props.width) : undefined
  return (
    <Box flexDirection="column">
      <Text wrap="truncate" bold={props.selected}>
        {props.selected ? "› " : "  "}
        {head.slice(0, at)}
        <Text color={c}>{g}</Text>
        <Text dimColor={s.status !== "running"}>{head.slice(at + g.length)}</Text>
      </Text>
      {bar !== undefined && <Text wrap="truncate">{"  " + bar}</Text>}
    </Box>
  )
}

const LogPanel = (props: {
  readonly step: StepView | undefined
  readonly width: number
  readonly color: boolean
  readonly lines: number
  readonly readTail: (file: string, lines: number) => ReadonlyArray<string>
}) => {
  const s = props.step
  if (s === undefined) return null
  // the log file has everything the worker wrote; log events are the fallback before it exists
  const fromFile = s.logPath !== undefined ? props.readTail(s.logPath, props.lines) : []
  const lines = fromFile.length > 0 ? fromFile : s.logTail.slice(-props.lines)
  return (
    <Box flexDirection="column" borderStyle="single" borderColor={props.color ? "gray" : undefined} width={props.width}>
      <Text bold wrap="truncate">{truncate(`log of ${s.id} (${s.status})${s.logPath !== undefined ? `: ${s.logPath}` : ""}`, props.width - 2)}</Text>
      {lines.length === 0
        ? <Text dimColor>(no log lines yet)</Text>
        : lines.map((l, i) => <Text key={i} wrap="truncate">{truncate(l, props.width - 2)}</Text>)}
    </Box>
  )
}

const HelpPanel = (props: { readonly width: number }) => (
  <Box flexDirection="column" borderStyle="single" width={props.width}>
    <Text bold>keys</Text>
    {keyHelp.map(([k, what]) => (
      <Text key={k} wrap="truncate">{truncate(`${k.padEnd(10)} ${what}`, props.width - 2)}</Text>
    ))}
  </Box>
)
