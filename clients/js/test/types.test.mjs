// The TypeScript declarations compile against code that uses the SDK as an application would.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

test("tidings.d.ts and tidings-react.d.ts type-check an application's usage", () => {
  const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
  const run = spawnSync(process.execPath, [tsc, "-p", "tsconfig.json"], { cwd: root, encoding: "utf8", timeout: 120000 });
  assert.equal(run.status, 0, `tsc failed:\n${run.stdout}${run.stderr}`);
});
