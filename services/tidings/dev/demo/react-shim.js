// The demo page loads React's UMD build (no bundler, no network): this module hands that global
// to `import React from "react"` (the import map in index.html points "react" here).
const React = globalThis.React;
if (!React) throw new Error("load react.production.min.js before the page's modules");
export default React;
