/** Every built-in step kind. Importing this module registers them all. */
export {}
