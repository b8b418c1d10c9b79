// One series' value in a Prometheus-format scrape (NaN when the series is absent).
export function scrapedValue(text: string, series: string): number {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return Number(line?.split(' ')[1] ?? Number.NaN);
}
