/**
 * The deployment artefacts read as Kubernetes and Docker would: every manifest of
 * deploy/kubernetes/ is a resource, its probes, ports and grace period agree with the config it
 * mounts (which compiles, and is still the Checkout example), and the Dockerfile runs the
 * gateway as a non-root user, on the config's port, without dev dependencies.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { parseAllDocuments, parse } from 'yaml'
import { compileText } from '../src/plan/compile.ts'
import type { GatewayPlan } from '../src/plan/types.ts'
import { ROOT } from './helpers/cli.ts'

const K8S = join(ROOT, 'deploy/kubernetes')

// The shapes read here, loosely: a wrong shape fails an assertion rather than a cast.
type Doc = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any

const kustomization = parse(readFileSync(join(K8S, 'kustomization.yaml'), 'utf8')) as Doc
const documents: { file: string; doc: Doc }[] = (kustomization.resources as string[]).flatMap((file) =>
  parseAllDocuments(readFileSync(join(K8S, file), 'utf8')).map((d) => ({ file, doc: d.toJS() as Doc })),
)
const find = (kind: string, name: string): Doc => {
  const found = documents.find(({ doc }) => doc.kind === kind && doc.metadata?.name === name)
  assert.ok(found, `no ${kind} ${name} in deploy/kubernetes`)
  return found.doc
}
const deployment = find('Deployment', 'baton')
const pod = deployment.spec.template.spec as Doc
const container = (pod.containers as Doc[]).find((c) => c.name === 'baton') as Doc
const env = Object.fromEntries((container.env as Doc[]).map((e) => [e.name as string, (e.value as string) ?? 'secret']))

/** The config of the ConfigMap generator, compiled as `baton serve` would in the pod (its env set by the Deployment). */
const generator = (kustomization.configMapGenerator as Doc[]).find((g) => g.name === 'baton-config') as Doc
const configFile = (generator.files as string[])[0] as string
const { plan } = compileText(configFile, readFileSync(join(K8S, configFile), 'utf8'), {
  env: { ...env, CHECKOUT_JWT_SECRET: 'a-secret-of-at-least-32-characters!!' },
  mode: 'serve',
})

const portNumber = (port: string | number): number =>
  typeof port === 'number' ? port : ((container.ports as Doc[]).find((p) => p.name === port)?.containerPort as number)

test('every manifest is a Kubernetes resource with apiVersion, kind and a name', () => {
  assert.equal(documents.length, 5)
  for (const { file, doc } of documents) {
    assert.match(String(doc.apiVersion), /^[a-z.]+\/v1$|^v1$/, `${file}: apiVersion`)
    assert.match(String(doc.kind), /^[A-Z]\w+$/, `${file}: kind`)
    assert.equal(typeof doc.metadata?.name, 'string', `${file}: metadata.name`)
  }
  assert.deepEqual([kustomization.apiVersion, kustomization.kind], ['kustomize.config.k8s.io/v1beta1', 'Kustomization'])
})

test("the ConfigMap's config compiles, and is the Checkout example's services and endpoints", () => {
  const example = readFileSync(join(ROOT, 'examples/checkout/baton.yaml'), 'utf8')
  const original: GatewayPlan = compileText('baton.yaml', example, { env: {}, mode: 'check' }).plan
  assert.deepEqual(
    plan.services.map((s) => [s.name, s.origin]),
    original.services.map((s) => [s.name, s.origin]),
  )
  assert.deepEqual(
    plan.endpoints.map((e) => [e.label, e.calls.map((c) => c.name)]),
    original.endpoints.map((e) => [e.label, e.calls.map((c) => c.name)]),
  )
  assert.equal(plan.services.filter((s) => s.mock !== null).length, 0, 'no mocks in the cluster')
})

test('probes: readiness on the readiness path, liveness on the liveness path, both on the port the config listens on', () => {
  assert.ok(plan.health !== null)
  assert.equal(container.readinessProbe.httpGet.path, plan.health.readyPath)
  assert.equal(container.livenessProbe.httpGet.path, plan.health.path)
  assert.equal(portNumber(container.readinessProbe.httpGet.port), plan.port)
  assert.equal(portNumber(container.livenessProbe.httpGet.port), plan.port)
  // Metrics on the admin port, where the scrape annotations say.
  assert.equal(portNumber('metrics'), plan.metrics?.port)
  assert.equal(Number(deployment.spec.template.metadata.annotations['prometheus.io/port']), plan.metrics?.port)
})

test('a pod leaves the Service (preStop) before SIGTERM, and the grace period covers that and the drain', () => {
  const command = container.lifecycle?.preStop?.exec?.command as string[]
  assert.equal(command[0], 'sleep')
  const preStop = Number(command[1])
  assert.ok(preStop >= 1)
  const grace = pod.terminationGracePeriodSeconds as number
  assert.ok(
    grace > preStop + plan.drainTimeout / 1000,
    `terminationGracePeriodSeconds ${grace} must exceed preStop ${preStop}s + drainTimeout ${plan.drainTimeout / 1000}s`,
  )
})

test('non-root, read-only root filesystem, no privilege escalation; the config mounted where the image reads it', () => {
  assert.equal(pod.securityContext.runAsNonRoot, true)
  assert.notEqual(pod.securityContext.runAsUser, 0)
  assert.equal(container.securityContext.readOnlyRootFilesystem, true)
  assert.equal(container.securityContext.allowPrivilegeEscalation, false)
  assert.deepEqual(container.securityContext.capabilities.drop, ['ALL'])
  assert.ok(container.resources.requests.cpu && container.resources.limits.memory)
  const mount = (container.volumeMounts as Doc[]).find((m) => m.name === 'config') as Doc
  const volume = (pod.volumes as Doc[]).find((v) => v.name === 'config') as Doc
  assert.equal(volume.configMap.name, 'baton-config')
  assert.deepEqual(container.args, ['serve', `${mount.mountPath}/${configFile}`])
})

test('the Service and the PodDisruptionBudget select the pods; Redis is where REDIS_URL says, and the limits use it', () => {
  const labels = deployment.spec.template.metadata.labels as Record<string, string>
  for (const doc of [find('Service', 'baton'), find('PodDisruptionBudget', 'baton')]) {
    const selector = (doc.spec.selector.matchLabels ?? doc.spec.selector) as Record<string, string>
    for (const [k, v] of Object.entries(selector)) assert.equal(labels[k], v, `${doc.kind} selector ${k}`)
  }
  for (const port of find('Service', 'baton').spec.ports as Doc[]) assert.ok(portNumber(port.targetPort))
  const url = new URL(env.REDIS_URL as string)
  const redis = find('Service', 'baton-redis')
  assert.equal(url.hostname, redis.metadata.name)
  assert.ok((redis.spec.ports as Doc[]).some((p) => String(p.port) === url.port))
  assert.equal(find('Deployment', 'baton-redis').spec.template.metadata.labels['app.kubernetes.io/name'], 'baton-redis')
  assert.equal(plan.redis.url, env.REDIS_URL)
  assert.equal(plan.edge.rateLimit?.store, 'redis')
})

test('Dockerfile: multi-stage, runtime stage non-root with production dependencies only, HEALTHCHECK and EXPOSE on the config port', () => {
  const lines = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
  const stages = lines.filter((l) => l.startsWith('FROM '))
  assert.ok(stages.length >= 2, 'multi-stage')
  for (const from of stages) assert.match(from, /^FROM node:24-(slim|alpine)\b/)
  const runtime = lines.slice(lines.lastIndexOf(stages.at(-1) as string))
  const one = (instruction: string): string => {
    const found = runtime.filter((l) => l.startsWith(`${instruction} `))
    assert.equal(found.length, 1, `one ${instruction} in the runtime stage`)
    return (found[0] as string).slice(instruction.length + 1)
  }
  const user = one('USER').split(':')[0]
  assert.ok(user !== 'root' && user !== '0', `USER ${user}`)
  assert.equal(Number(user), pod.securityContext.runAsUser)
  assert.equal(Number(one('EXPOSE')), plan.port)
  assert.equal(one('STOPSIGNAL'), 'SIGTERM')
  assert.ok(plan.health !== null)
  assert.ok(one('HEALTHCHECK').includes(`http://127.0.0.1:${plan.port}${plan.health.path}'`))
  assert.deepEqual(JSON.parse(one('ENTRYPOINT')), ['node', '/app/bin/baton.js'])
  assert.deepEqual(JSON.parse(one('CMD')), ['serve', `/etc/baton/${configFile}`])
  // No npm install in the runtime stage; the dependencies it copies were installed without the dev ones.
  assert.equal(runtime.filter((l) => /^RUN .*\bnpm (i|install|ci)\b/.test(l)).length, 0)
  const copied = runtime.filter((l) => l.startsWith('COPY --from=') && l.includes('node_modules'))
  assert.equal(copied.length, 1)
  const from = /--from=(\S+)/.exec(copied[0] as string)?.[1] as string
  const stage = lines.slice(lines.findIndex((l) => l.endsWith(` AS ${from}`)))
  const install = stage.find((l) => /^RUN .*\bnpm ci\b/.test(l)) as string
  assert.match(install, /--omit=dev/)
  assert.match(readFileSync(join(ROOT, '.dockerignore'), 'utf8'), /^node_modules$/m)
})
