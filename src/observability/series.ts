/**
 * Counters and histograms for the request path, registered in a prom-client Registry (which
 * still renders the exposition). prom-client's own label children re-validate and re-hash their
 * labels on every inc/observe; measured on the checkout benchmark at one connection, that was
 * ~35 µs of a ~540 µs request (bench/RESULTS.md). Here a series is resolved once, and
 * recording into it is a bucket search and two additions.
 *
 * The registry reads these metrics through prom-client's internal `get()` shape (name, help,
 * type, aggregator, values with labels and, for histograms, `le`): package.json pins prom-client
 * to ~15.1 for that reason, and series.test.ts checks the contract against the installed
 * prom-client (the exposition, and AggregatorRegistry's sums across workers).
 */
import type { Registry } from 'prom-client'

type Labels = Readonly<Record<string, string>>

interface Exported {
  labels: Record<string, string | number>
  sharedLabels?: Labels
  value: number
  metricName?: string
}

interface MetricOptions {
  name: string
  help: string
  labelNames: readonly string[]
  registers: readonly Registry[]
}

/** Label values in label-name order, as one key. */
function keyOf(labelNames: readonly string[], labels: Labels): string {
  let key = ''
  for (const name of labelNames) key += `${labels[name] ?? ''}\u0000`
  return key
}

abstract class Metric<S> {
  readonly name: string
  readonly help: string
  readonly aggregator = 'sum'
  readonly #labelNames: readonly string[]
  protected readonly series = new Map<string, S>()

  constructor(options: MetricOptions) {
    this.name = options.name
    this.help = options.help
    this.#labelNames = options.labelNames
    for (const registry of options.registers) registry.registerMetric(this as never)
  }

  /** The series of these label values, created on first use; keep it and record into it. */
  labels(labels: Labels): S {
    const key = keyOf(this.#labelNames, labels)
    let series = this.series.get(key)
    if (series === undefined) {
      for (const name of Object.keys(labels)) {
        if (!this.#labelNames.includes(name)) throw new Error(`${this.name} has no label ${name}`)
      }
      series = this.create(labels)
      this.series.set(key, series)
    }
    return series
  }

  protected abstract create(labels: Labels): S
}

export class CounterSeries {
  readonly labels: Labels
  value = 0

  constructor(labels: Labels) {
    this.labels = labels
  }

  inc(by = 1): void {
    this.value += by
  }
}

export class SeriesCounter extends Metric<CounterSeries> {
  readonly type = 'counter'

  protected create(labels: Labels): CounterSeries {
    return new CounterSeries(labels)
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: Exported[] } {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: [...this.series.values()].map((s) => ({ labels: { ...s.labels }, value: s.value })),
    }
  }
}

export class HistogramSeries {
  readonly labels: Labels
  readonly #bounds: readonly number[]
  /** Per bucket (the last one is +Inf), not cumulative. */
  readonly counts: number[]
  sum = 0
  count = 0

  constructor(labels: Labels, bounds: readonly number[]) {
    this.labels = labels
    this.#bounds = bounds
    this.counts = new Array<number>(bounds.length + 1).fill(0)
  }

  observe(value: number): void {
    const bounds = this.#bounds
    let i = 0
    while (i < bounds.length && value > (bounds[i] as number)) i++
    ;(this.counts[i] as number)++
    this.sum += value
    this.count++
  }
}

export class SeriesHistogram extends Metric<HistogramSeries> {
  readonly type = 'histogram'
  readonly #bounds: readonly number[]

  constructor(options: MetricOptions & { buckets: readonly number[] }) {
    super(options)
    this.#bounds = [...options.buckets].sort((a, b) => a - b)
  }

  protected create(labels: Labels): HistogramSeries {
    return new HistogramSeries(labels, this.#bounds)
  }

  /**
   * Every value with all its labels (`le` and the series'), as prom-client's own histogram gives
   * them: what `getMetricsAsJSON()` returns, and what the AggregatorRegistry of `baton serve
   * --workers` sums by labels (with the series' labels apart, it would add up every endpoint's buckets).
   */
  get(): { name: string; help: string; type: string; aggregator: string; values: Exported[] } {
    const metric = this.getForPromString()
    for (const v of metric.values) {
      v.labels = { ...v.labels, ...v.sharedLabels }
      delete v.sharedLabels
    }
    return metric
  }

  /** The shape prom-client's Registry renders (it prefers this to get()): cumulative buckets, then +Inf, sum and count per series. */
  getForPromString(): { name: string; help: string; type: string; aggregator: string; values: Exported[] } {
    const values: Exported[] = []
    const bucket = `${this.name}_bucket`
    for (const s of this.series.values()) {
      let cumulative = 0
      this.#bounds.forEach((le, i) => {
        cumulative += s.counts[i] as number
        values.push({ labels: { le }, sharedLabels: s.labels, value: cumulative, metricName: bucket })
      })
      values.push(
        { labels: { le: '+Inf' }, sharedLabels: s.labels, value: s.count, metricName: bucket },
        { labels: {}, sharedLabels: s.labels, value: s.sum, metricName: `${this.name}_sum` },
        { labels: {}, sharedLabels: s.labels, value: s.count, metricName: `${this.name}_count` },
      )
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }
}
