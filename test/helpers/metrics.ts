/** Reads one series of a gateway's Prometheus exposition. */

/** The value of the series written exactly `series` (name and labels) at `base`/metrics; NaN when there is none. */
export async function metricValue(base: string, series: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text()
  const found = text.split('\n').find((l) => l.startsWith(series + ' '))
  return Number(found?.slice(series.length + 1) ?? NaN)
}
