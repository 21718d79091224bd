/**
 * Colour for the text renderings (`plan`, `show`): plain SGR codes, none at all when colour is off
 * (NO_COLOR, pipes), so the same function serves people and scripts.
 */
const codes = { red: 31, green: 32, yellow: 33, blue: 34, cyan: 36, gray: 90, bold: 1, dim: 2 } as const
export type Style = keyof typeof codes

export type Paint = (style: Style, text: string) => string

export const makePaint = (color: boolean): Paint =>
  color ? (style, text) => (text === "" ? text : `\x1b[${codes[style]}m${text}\x1b[0m`) : (_style, text) => text

/** no-color.org: colour is off when NO_COLOR is set to anything but the empty string. */
export const colorEnabled = (env: NodeJS.ProcessEnv = process.env): boolean =>
  env["NO_COLOR"] === undefined || env["NO_COLOR"] === ""
