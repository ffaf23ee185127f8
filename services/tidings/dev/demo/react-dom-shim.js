// `import { createRoot } from "react-dom/client"` for the UMD build the page loads.
const ReactDOM = globalThis.ReactDOM;
if (!ReactDOM) throw new Error("load react-dom.production.min.js before the page's modules");
export const createRoot = ReactDOM.createRoot;
export default ReactDOM;
