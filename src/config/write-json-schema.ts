// Script: writes schema/trellis.schema.json from the TypeBox source (`npm run schema`).
// Run it after changing a kind in src/config/schema/; test/config/json-schema-file.test.ts
// fails until the committed file matches.
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { JSON_SCHEMA_PATH, jsonSchemaText } from './json-schema.js';

// This file runs from dist/src/config/, three levels below the project root.
const target = fileURLToPath(new URL(`../../../${JSON_SCHEMA_PATH}`, import.meta.url));
await mkdir(dirname(target), { recursive: true });
await writeFile(target, jsonSchemaText());
process.stdout.write(`wrote ${JSON_SCHEMA_PATH}\n`);
