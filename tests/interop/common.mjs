// What every scenario script shares: a failed check, bounded waits, and its flags.

/** A failed check: the script prints "assertion failed: ..." and exits 1. */
export class Fail extends Error {}

export const check = (cond, msg) => {
  if (!cond) throw new Fail(msg);
};

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** ms, any single wait. */
export const WAIT = 10_000;

/** The value after `--name` on the command line, or `dflt`. */
export function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

/** `promise`, or a Fail naming `what` after `ms`. */
export function withTimeout(promise, ms, what) {
  let t;
  const timeout = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Fail(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(t));
}

/** Headless Chromium (Debian's, at `path`), its version printed; launching gives up after `ms`. */
export async function launchChromium(chromium, path, ms = 30_000) {
  const browser = await chromium.launch({
    executablePath: path,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
    timeout: ms,
  });
  console.log(`chromium ${browser.version()}`);
  return browser;
}
