/** @jsxRuntime automatic */
/** @jsxImportSource react */
// (the pragmas make the JSX transform independent of the tsconfig in the user's working directory:
// bin/anneal.js registers tsx, which reads the tsconfig of the cwd, not this project's)
/**
 * The live view as a `Reporter`: events fold into the view state (state.ts) and the view is redrawn,
 * at most every `frameMs` and once a second for the clocks. The streams, the width and colour are
 * parameters (STYLE.md point 8), so the CLI passes the real terminal and tests pass fakes.
 */
import { render } from "ink"
import type { EngineEvent, Reporter } from "../../engine/events.ts"
import { initialState, makeFold } from "./state.ts"
import type { RunState } from "./state.ts"
import { LiveView } from "./live-view.tsx"

export interface InkReporterOptions {
  readonly stdout: NodeJS.WritableStream
  readonly stdin: NodeJS.ReadableStream
  /** a fixed width; by default the terminal's, followed on resize */
  readonly columns?: number | undefined
  /** false where the terminal cannot redraw in place (Ink then prints the last frame only) */
  readonly interactive: boolean
  /** `q` or Ctrl-C: abort the run (the engine stops workers and records them interrupted) */
  readonly onInterrupt: () => void
  /** false under NO_COLOR (see `colorEnabled`) */
  readonly color: boolean
  readonly now?: (() => number) | undefined
  readonly frameMs?: number | undefined
  /** route console.* above the live area (default true; test runners that replace console pass false) */
  readonly patchConsole?: boolean | undefined
}

export { colorEnabled } from "../render/paint.ts"

const within = (ms: number, p: Promise<unknown>): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms)
    p.then(() => resolve(), () => resolve()).finally(() => clearTimeout(t))
  })

export interface InkReporter extends Reporter {
  /** the state so far, e.g. for the Markdown summary */
  readonly state: () => RunState
}

export const makeInkReporter = (options: InkReporterOptions): InkReporter => {
  const now = options.now ?? Date.now
  // a real terminal has columns and emits "resize"; a fake stream may have neither
  const stdout = options.stdout as NodeJS.WritableStream & {
    columns?: number
    rows?: number
    on?: (e: "resize", f: () => void) => unknown
    off?: (e: "resize", f: () => void) => unknown
  }
  const fold = makeFold(initialState(now()))
  let finished = false
  const columns = () => options.columns ?? (stdout.columns !== undefined && stdout.columns > 0 ? stdout.columns : 80)

  let instance: ReturnType<typeof render> | undefined
  const view = () => (
    <LiveView state={fold.state()} now={now()} columns={columns()} rows={stdout.rows} color={options.color}
      onInterrupt={options.onInterrupt} finished={finished} />
  )
  // registered before Ink's own resize handler, so the frame Ink redraws on a resize already has the
  // new width (otherwise a frame as wide as the old terminal wraps and leaves debris on screen)
  const onResize = () => redraw()
  stdout.on?.("resize", onResize)
  instance = render(view(), {
    stdout: options.stdout,
    stdin: options.stdin,
    interactive: options.interactive,
    // Ctrl-C is a key like `q`: the run must stop its workers before the process exits
    exitOnCtrlC: false,
    // console output from in-process steps is printed above the live area instead of tearing it
    patchConsole: options.patchConsole ?? true
  })

  let scheduled: NodeJS.Timeout | undefined
  const redraw = () => {
    if (scheduled !== undefined) clearTimeout(scheduled)
    scheduled = undefined
    instance?.rerender(view())
  }
  const schedule = () => {
    if (scheduled === undefined) scheduled = setTimeout(redraw, options.frameMs ?? 80)
  }
  // elapsed times and ETAs move even when no event arrives
  const clock = setInterval(redraw, 1000)
  clock.unref()
  return {
    state: fold.state,
    emit: (event: EngineEvent) => {
      try {
        fold.apply(event, now())
        schedule()
      } catch {
        // a reporter must not throw into the engine; a bad event only costs its own update
      }
    },
    close: async () => {
      finished = true
      clearInterval(clock)
      stdout.off?.("resize", onResize)
      redraw()
      // bounded: a terminal that went away (closed window, stalled pipe) must not hold the exit
      if (instance === undefined) return
      await within(1000, instance.waitUntilRenderFlush())
      instance.unmount()
      await within(1000, instance.waitUntilExit())
    }
  }
}
