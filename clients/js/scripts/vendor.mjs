// Copy React's UMD builds into the demo page's directory, which the Python package ships as
// package data. A test fails when they differ: run `npm run vendor` after changing React's
// version. The SDK itself (src/) is not copied: the demo serves it from here in a checkout, and
// the Python build (setup.py) puts it into the wheel.
import { copyFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const demo = join(here, "..", "..", "services", "tidings", "dev", "demo");

export const COPIES = [
  ["node_modules/react/umd/react.production.min.js", "react.production.min.js"],
  ["node_modules/react-dom/umd/react-dom.production.min.js", "react-dom.production.min.js"],
  ["node_modules/react/LICENSE", "LICENSE-react.txt"], // React and ReactDOM are MIT: ship the text
];

for (const [from, to] of COPIES) {
  copyFileSync(join(here, from), join(demo, to));
  console.log(`${from} -> services/tidings/dev/demo/${to}`);
}
