// Build the plotter's page into ../static: our own src/ files plus the libraries from
// node_modules (pinned by package-lock.json). No bundler and nothing from a CDN: the page
// loads only these files, from the appliance.
"use strict";
const fs = require("fs");
const path = require("path");

const here = __dirname;
const out = path.join(here, "..", "static");
const files = [
  ["node_modules/uplot/dist/uPlot.iife.min.js", "uPlot.iife.min.js"],
  ["node_modules/uplot/dist/uPlot.min.css", "uPlot.min.css"],
  ["node_modules/uplot/LICENSE", "uPlot.LICENSE.txt"],
];
for (const name of fs.readdirSync(path.join(here, "src"))) {
  files.push([path.join("src", name), name]);
}
fs.rmSync(out, { recursive: true, force: true });
fs.mkdirSync(out, { recursive: true });
for (const [from, to] of files) {
  fs.copyFileSync(path.join(here, from), path.join(out, to));
}
// Python's package_data needs the folder to be a plain directory of files.
console.log(`plotter page built: ${files.length} files in ${path.relative(process.cwd(), out) || out}`);
