//! Debian's Chromium driven by playwright-core, launched the one way the browser scripts share
//! (dashboard.mjs, the browser test; render.mjs, the bench's render time).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Where infra/local/install.sh puts playwright-core: $BILLY_CACHE (~/.cache/billy)/browser-<PLAYWRIGHT_CORE_VERSION>. */
export function defaultPlaywrightHome() {
  const versions = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "infra", "local", "versions.env");
  const version = readFileSync(versions, "utf8").match(/^PLAYWRIGHT_CORE_VERSION=(\S+)\s*$/m)?.[1];
  if (!version) throw new Error(`${versions} pins no PLAYWRIGHT_CORE_VERSION`);
  return join(process.env.BILLY_CACHE || join(homedir(), ".cache", "billy"), `browser-${version}`);
}

/** playwright-core's `chromium` from `home` (a folder whose node_modules holds playwright-core). */
export function playwrightChromium(home) {
  return createRequire(join(home, "node_modules", "noop.js"))("playwright-core").chromium;
}

/** Launches `executablePath` headless through playwright-core's `chromium`. */
export function launch(chromium, executablePath, options = {}) {
  return chromium.launch({
    executablePath,
    headless: true,
    // Playwright starts every launch with a fresh, empty user data directory of its own.
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    ...options,
  });
}
