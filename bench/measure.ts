// Measuring helpers of `npm run bench`: medians, spreads and ratios against a baseline measured in the same run.

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

export async function time(work: () => Promise<unknown> | unknown): Promise<number> {
  const started = performance.now();
  await work();
  return performance.now() - started;
}

export function line(
  name: string,
  ours: number[],
  baselineName: string,
  baseline: number[],
  target?: string,
): void {
  const spread = (values: number[]) =>
    `${median(values).toFixed(0).padStart(6)} ms (${Math.min(...values).toFixed(0)}–${Math.max(...values).toFixed(0)})`;
  const ratios = ours.map((value, i) => value / (baseline[i] ?? Number.NaN)).filter(Number.isFinite);
  const verdict = target ? `  target ${target}` : '';
  console.log(
    `${name.padEnd(44)} ${spread(ours)}   ${baselineName.padEnd(38)} ${spread(baseline)}   ratio ${(median(ours) / median(baseline)).toFixed(2)} (per round ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})${verdict}`,
  );
}
