import assert from 'node:assert/strict'
import { test } from 'node:test'
import { AggregatorRegistry, Registry } from 'prom-client'
import { SeriesCounter, SeriesHistogram } from './series.ts'

test('a histogram renders cumulative buckets, +Inf, sum and count per series, as prom-client does', async () => {
  const registry = new Registry()
  const h = new SeriesHistogram({
    name: 't_seconds',
    help: 'T.',
    labelNames: ['a'],
    buckets: [0.5, 0.1, 1],
    registers: [registry],
  })
  const x = h.labels({ a: 'x' })
  for (const v of [0.1, 0.1000001, 0.5, 2]) x.observe(v)
  h.labels({ a: 'y' })
  assert.equal(
    await registry.metrics(),
    [
      '# HELP t_seconds T.',
      '# TYPE t_seconds histogram',
      't_seconds_bucket{le="0.1",a="x"} 1', // a value equal to a bound is in that bucket
      't_seconds_bucket{le="0.5",a="x"} 3',
      't_seconds_bucket{le="1",a="x"} 3',
      't_seconds_bucket{le="+Inf",a="x"} 4',
      't_seconds_sum{a="x"} 2.7000001',
      't_seconds_count{a="x"} 4',
      't_seconds_bucket{le="0.1",a="y"} 0', // resolved series are shown from the start, as zeros
      't_seconds_bucket{le="0.5",a="y"} 0',
      't_seconds_bucket{le="1",a="y"} 0',
      't_seconds_bucket{le="+Inf",a="y"} 0',
      't_seconds_sum{a="y"} 0',
      't_seconds_count{a="y"} 0',
      '',
    ].join('\n'),
  )
})

test('a counter: one series per label values, resolved once; unknown labels are refused', async () => {
  const registry = new Registry()
  const c = new SeriesCounter({ name: 't_total', help: 'T.', labelNames: ['a', 'b'], registers: [registry] })
  const one = c.labels({ a: '1', b: '2' })
  one.inc()
  c.labels({ b: '2', a: '1' }).inc(2)
  assert.equal(c.labels({ a: '1', b: '2' }), one)
  assert.throws(() => c.labels({ a: '1', nope: 'x' }), /t_total has no label nope/)
  assert.equal(await registry.metrics(), '# HELP t_total T.\n# TYPE t_total counter\nt_total{a="1",b="2"} 3\n')
})

test("two workers' series add up per series in prom-client's AggregatorRegistry (baton serve --workers)", async () => {
  const workers = [new Registry(), new Registry()].map((registry) => ({
    registry,
    h: new SeriesHistogram({ name: 't_seconds', help: 'T.', labelNames: ['a'], buckets: [1], registers: [registry] }),
    c: new SeriesCounter({ name: 't_total', help: 'T.', labelNames: ['a'], registers: [registry] }),
  }))
  const [one, two] = workers as [(typeof workers)[0], (typeof workers)[0]]
  one.h.labels({ a: 'x' }).observe(0.5)
  one.h.labels({ a: 'y' }).observe(2)
  two.h.labels({ a: 'x' }).observe(3)
  one.c.labels({ a: 'x' }).inc(2)
  two.c.labels({ a: 'x' }).inc(3)
  two.c.labels({ a: 'y' }).inc()
  const json = await Promise.all(workers.map((w) => w.registry.getMetricsAsJSON()))
  assert.equal(
    await AggregatorRegistry.aggregate(json).metrics(),
    [
      '# HELP t_seconds T.',
      '# TYPE t_seconds histogram',
      't_seconds_bucket{le="1",a="x"} 1',
      't_seconds_bucket{le="+Inf",a="x"} 2',
      't_seconds_sum{a="x"} 3.5',
      't_seconds_count{a="x"} 2',
      't_seconds_bucket{le="1",a="y"} 0',
      't_seconds_bucket{le="+Inf",a="y"} 1',
      't_seconds_sum{a="y"} 2',
      't_seconds_count{a="y"} 1',
      '',
      '# HELP t_total T.',
      '# TYPE t_total counter',
      't_total{a="x"} 5',
      't_total{a="y"} 1',
      '',
    ].join('\n'),
  )
})
