// Copy the SDK (src/ is the source of truth) and React's UMD builds into the demo page's
// directory, which the Python package ships as package data. A test fails when they differ:
// run `npm run vendor` after changing src/ or React's version.
import { copyFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const demo = join(here, "..", "..", "services", "tidings", "demo");

export const COPIES = [
  ["src/tidings.js", "tidings.js"],
  ["src/tidings-react.js", "tidings-react.js"],
  ["node_modules/react/umd/react.production.min.js", "react.production.min.js"],
  ["node_modules/react-dom/umd/react-dom.production.min.js", "react-dom.production.min.js"],
  ["node_modules/react/LICENSE", "LICENSE-react.txt"], // React and ReactDOM are MIT: ship the text
];

for (const [from, to] of COPIES) {
  copyFileSync(join(here, from), join(demo, to));
  console.log(`${from} -> services/tidings/demo/${to}`);
}
