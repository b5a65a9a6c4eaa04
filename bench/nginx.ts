// The fast upstream of the benchmark: nginx serving the fake services' JSON as static
// files, so that the gateway under test, not its upstream, is the bottleneck. A Node
// upstream costs about as much CPU per call as the gateway itself; nginx costs a fraction.
//
// nginx runs as a child process (not a daemon) with a config and files written into a
// temporary directory at start. It serves the posts and users of bench/upstream.ts and
// the checkout services at the paths of bench/checkout-paths.ts (the fast regime). A POST
// to a static file is a 405 in nginx; `error_page 405 =200 $uri` turns it into the file,
// so the checkout's calls keep their method and body. nginx has no /__stats: in this
// regime the driver cannot count what a gateway sends upstream.
import { accessSync, chmodSync, constants, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { checkoutPaths } from './checkout-paths.ts'
import { pinned } from './pin.ts'
import { freePort, startServer } from './processes.ts'
import type { Server } from './processes.ts'
import {
  availabilityBody,
  benchCartId,
  cartBody,
  postsBody,
  pricingBody,
  shippingBody,
  taxBody,
  userBodies,
} from './upstream-data.ts'

export const nginxBinary = process.env.BENCH_NGINX ?? '/usr/sbin/nginx'

/** Why nginx cannot run here, or undefined if it can. */
export function nginxMissing(): string | undefined {
  try {
    accessSync(nginxBinary, constants.X_OK)
    return undefined
  } catch {
    return `no nginx at ${nginxBinary} (apt-get install nginx-light, or set BENCH_NGINX)`
  }
}

/** Every file nginx serves, by URL path. */
function files(): Map<string, Buffer | string> {
  const paths = checkoutPaths.nginx
  const served = new Map<string, Buffer | string>([
    ['/posts', postsBody],
    [`${paths.cart}${benchCartId}`, cartBody(benchCartId)],
    [paths.inventory, availabilityBody],
    [paths.pricing, pricingBody],
    [paths.shipping, shippingBody],
    [paths.tax, taxBody],
    // The OTLP exporter of the baton-tracing target posts its spans here.
    ['/v1/traces', '{}'],
  ])
  for (const [id, body] of userBodies) served.set(`/users/${id}`, body)
  if (served.size !== 7 + userBodies.size) throw new Error('nginx upstream: two checkout services share a path')
  return served
}

function config(dir: string, port: number): string {
  const temp = join(dir, 'temp')
  return `daemon off;
worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${temp}/body;
  proxy_temp_path ${temp}/proxy;
  fastcgi_temp_path ${temp}/fastcgi;
  uwsgi_temp_path ${temp}/uwsgi;
  scgi_temp_path ${temp}/scgi;
  types {}
  default_type application/json;
  # The gateways keep their connections: never close one after N requests.
  keepalive_requests 10000000;
  keepalive_timeout 65s;
  server {
    listen 127.0.0.1:${port};
    root ${join(dir, 'www')};
    location / { error_page 405 =200 $uri; }
  }
}
`
}

/** Starts nginx on a free port of 127.0.0.1; stopping the server removes its directory. */
export async function startNginx(cores?: string): Promise<Server> {
  const dir = mkdtempSync(join(tmpdir(), 'baton-bench-nginx-'))
  // nginx's worker may run as another user (nobody, when started as root): let it read.
  chmodSync(dir, 0o755)
  mkdirSync(join(dir, 'temp'))
  for (const [path, body] of files()) {
    const file = join(dir, 'www', path)
    mkdirSync(dirname(file), { recursive: true, mode: 0o755 })
    writeFileSync(file, body, { mode: 0o644 })
  }
  const port = await freePort()
  writeFileSync(join(dir, 'nginx.conf'), config(dir, port))
  let server: Server
  try {
    server = await startServer(
      'nginx',
      pinned(cores, [nginxBinary, '-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf')]),
      process.env,
      { knownPort: port },
    )
  } catch (err) {
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
  return {
    ...server,
    get exited() {
      return server.exited
    },
    stop: async () => {
      await server.stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
