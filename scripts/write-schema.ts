/** Regenerates schema/baton.schema.json from the config declarations (npm run schema). */
import { writeFileSync } from 'node:fs'
import { jsonSchema } from '../src/config/schema.ts'

const file = new URL('../schema/baton.schema.json', import.meta.url)
writeFileSync(file, `${JSON.stringify(jsonSchema(), null, 2)}\n`)
console.log(`wrote ${file.pathname}`)
