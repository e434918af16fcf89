// Validate custom resources with the validators of @kubernetes-models (generated from the operators' API
// definitions: types, enums, patterns, required fields). Input: a JSON file holding [{module, kind, document}];
// output on stdout: a JSON list of [index, message] for the documents that fail.
import { readFileSync } from "node:fs";

const items = JSON.parse(readFileSync(process.argv[2], "utf8"));
const problems = [];
for (const [index, { module, kind, document }] of items.entries()) {
  const Model = (await import(module))[kind];
  try {
    new Model(document).validate();
  } catch (error) {
    problems.push([index, error.message]);
  }
}
process.stdout.write(JSON.stringify(problems));
