// Script: writes schema/trellis.schema.json and the CRDs under deploy/kubernetes/crds/
// from the TypeBox source (`npm run schema`). Run it after changing a kind in
// src/config/schema/; test/config/json-schema-file.test.ts and test/k8s/crds.test.ts
// fail until the committed files match.
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CRD_DIR, crdFiles } from '../k8s/crds.js';
import { JSON_SCHEMA_PATH, jsonSchemaText } from './json-schema.js';

// This file runs from dist/src/config/, three levels below the project root.
const target = fileURLToPath(new URL(`../../../${JSON_SCHEMA_PATH}`, import.meta.url));
await mkdir(dirname(target), { recursive: true });
await writeFile(target, jsonSchemaText());
process.stdout.write(`wrote ${JSON_SCHEMA_PATH}\n`);

const crdDir = fileURLToPath(new URL(`../../../${CRD_DIR}`, import.meta.url));
await mkdir(crdDir, { recursive: true });
for (const [name, text] of crdFiles()) await writeFile(join(crdDir, name), text);
process.stdout.write(`wrote ${CRD_DIR}/\n`);
