/**
 * `baton init [dir]`: a starter config that `baton dev` serves at once — one screen, a required
 * call and an optional one with its fallback, each service with mock routes — with comments that
 * say what each part is for, and the JSON Schema line editors read.
 */
import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join, relative } from 'node:path'

export const STARTER = `# yaml-language-server: $schema=./node_modules/baton/schema/baton.schema.json
# A Baton config: the services a screen needs, and the endpoint that calls them.
# Try it:   npx baton dev baton.yaml          (every service answers from its mock: routes)
#           curl localhost:8080/home/42
# Then:     npx baton dev baton.yaml --down recommendations   (the optional call falls back)
version: 1

gateway:
  name: My BFF
  port: 8080
  timeout: 2s                  # each endpoint's deadline, unless it sets its own

services:
  profile:
    url: https://profile.internal          # the real service, for baton serve
    timeout: 300ms
    mock:                                  # what baton dev answers instead
      "GET /users/{id}":
        body: { id: "\${request.params.id}", name: Ada Lovelace }
  recommendations:
    url: https://recommendations.internal
    timeout: 200ms
    mock:
      "GET /users/{id}/recommendations":
        body: [{ sku: LAMP-1, title: Desk lamp }, { sku: CHAIR-2, title: Chair }]
        latency: 40ms

endpoints:
  GET /home/{userId}:
    purpose: The home screen
    calls:
      # Required: without the user there is no screen (the client gets 502 and which service failed).
      user:
        request: GET profile /users/\${request.params.userId}
      # Optional: if it fails or is slow, the screen renders without it (marked partial).
      recommendations:
        request: GET recommendations /users/\${request.params.userId}/recommendations
        required: false
        fallback: []
    response:
      user: \${user}
      recommendations: \${recommendations}
`

/** Writes `dir`/baton.yaml; returns what to say, or throws when the file is there already. */
export async function init(dir: string): Promise<string> {
  const file = join(dir, 'baton.yaml')
  if (existsSync(file)) throw new Error(`${file} already exists; it was left as it is`)
  await mkdir(dir, { recursive: true })
  await writeFile(file, STARTER, { flag: 'wx' })
  const near = relative(process.cwd(), file)
  const shown = near === '' || near.startsWith('..') ? file : near
  return [
    `wrote ${shown}: one screen (GET /home/{userId}) calling two services, both with mock routes`,
    '',
    `  npx baton check ${shown}`,
    `  npx baton dev ${shown}`,
    '  curl localhost:8080/home/42',
  ].join('\n')
}
